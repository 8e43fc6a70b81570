using Kumo.Daemon;

return await DaemonCommand.Build().Parse(args).InvokeAsync();

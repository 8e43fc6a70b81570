using Kumo.Cli;

return await KumoCli.RunAsync(args, CliEnvironment.FromProcess());

using System.CommandLine;

namespace Kumo.Cli.Commands;

/// <summary>kumo vm debug NAME [--attach] [--symbols FILE] [--off]: QEMU's gdb stub on a port from the admin's pool.</summary>
internal static class VmDebugCommand
{
    public static Command Create(CliContext cli)
    {
        var name = VmCommands.NameArgument();
        var attach = new Option<bool>("--attach") { Description = "Then run gdb, already connected to the stub" };
        var symbols = new Option<string?>("--symbols") { Description = "With --attach: load symbols from this file (e.g. the guest's vmlinux)", HelpName = "FILE" };
        var off = new Option<bool>("--off") { Description = "Stop the stub and free its port" };
        var debug = new Command("debug", "Enable a VM's gdb stub and print the gdb command that connects to it") { name, attach, symbols, off };
        cli.Examples(debug, "kumo vm debug web", "kumo vm debug web --attach --symbols ./vmlinux", "kumo vm debug web --off");
        cli.SetAction(debug, async run =>
        {
            var vm = Check.Name(run.Get(name), "vm name");
            var symbolFile = run.Get(symbols);
            if (run.Get(off))
            {
                if (run.Get(attach) || symbolFile is not null) throw new UsageException("--off cannot be combined with --attach or --symbols");
                await run.Client.DisableDebugAsync(vm, run.Cancellation);
                run.Output.Write(new Kumo.Core.DebugStub { Enabled = false }, _ => Output.Line($"gdb stub of {vm} is off"));
                return KumoCli.Ok;
            }
            if (symbolFile is not null && !run.Get(attach)) throw new UsageException("--symbols is for gdb: use it with --attach");
            if (symbolFile is not null && !File.Exists(symbolFile)) throw new UsageException($"symbol file '{symbolFile}' does not exist");
            var stub = await run.Client.EnableDebugAsync(vm, run.Cancellation);
            if (!run.Get(attach))
            {
                run.Output.Write(stub, s => Output.Line(s.Target ?? ""));
                return KumoCli.Ok;
            }
            return await GdbAsync(run, stub.Target!, symbolFile);
        });
        return debug;
    }

    /// <summary>
    /// Replaces this process with gdb connected to the stub (exec, so gdb owns the terminal and Ctrl-C interrupts the
    /// guest, not kumo). Returns only when gdb cannot be run.
    /// </summary>
    private static async Task<int> GdbAsync(Invocation run, string target, string? symbols)
    {
        var argv = new List<string?> { "gdb" };
        if (symbols is not null) argv.Add(symbols);
        argv.AddRange(["-ex", target, null]);
        await run.Environment.Out.FlushAsync();
        await run.Environment.Error.FlushAsync();
        _ = Execvp("gdb", [.. argv]);
        throw new UsageException($"cannot run gdb ({System.Runtime.InteropServices.Marshal.GetLastPInvokeErrorMessage()}); install it (apt-get install gdb) or connect your own debugger: {target}");
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "execvp", SetLastError = true)]
    private static extern int Execvp([System.Runtime.InteropServices.MarshalAs(System.Runtime.InteropServices.UnmanagedType.LPUTF8Str)] string file,
        [System.Runtime.InteropServices.MarshalAs(System.Runtime.InteropServices.UnmanagedType.LPArray, ArraySubType = System.Runtime.InteropServices.UnmanagedType.LPStr)] string?[] argv);
}

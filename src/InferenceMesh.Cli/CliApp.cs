using System.CommandLine;
using InferenceMesh.Cli.Commands;
using InferenceMesh.Core;

namespace InferenceMesh.Cli;

/// <summary>The composition root: builds the verb tree and runs one command line, turning errors into one line and an exit code.</summary>
public static class CliApp
{
    public static readonly Option<bool> Verbose = new("--verbose", "-v") { Description = "Print stack traces and details on errors", Recursive = true };

    /// <summary>The exit code for a mesh error: unavailable mesh, timeout, or bad input.</summary>
    public static ExitCode ExitCodeOf(MeshErrorCode code) => code switch
    {
        MeshErrorCode.RouteUnavailable or MeshErrorCode.PeersUnreachable => ExitCode.MeshUnavailable,
        MeshErrorCode.Timeout => ExitCode.Timeout,
        _ => ExitCode.BadInput,
    };

    public static async Task<int> RunAsync(string[] args, ICliConsole console, CancellationToken cancellation = default)
    {
        var root = new RootCommand("InferenceMesh: a peer-to-peer LLM inference mesh");
        root.Options.Add(Verbose);
        root.Subcommands.Add(ModelCommand.Create(console));
        root.Subcommands.Add(GenerateCommand.Create(console));
        root.Subcommands.Add(BenchCommand.Create(console));
        root.Subcommands.Add(NodeCommand.Create(console));
        root.Subcommands.Add(PingCommand.Create(console));
        root.Subcommands.Add(SwarmCommand.Create(console));
        root.Subcommands.Add(PromptCommand.Create(console));
        root.Subcommands.Add(DemoCommand.Create(console));
        root.Subcommands.Add(ServeCommand.Create(console));
        root.Subcommands.Add(DhtCommand.Create(console));
        var parsed = root.Parse(args);
        var config = new InvocationConfiguration { Output = console.Out, Error = console.Error, EnableDefaultExceptionHandler = false };
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        using var sigint = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, context => { context.Cancel = true; stop.Cancel(); });
        using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, context => { context.Cancel = true; stop.Cancel(); });
        try
        {
            return await parsed.InvokeAsync(config, stop.Token);
        }
        catch (MeshException e)
        {
            console.Error.WriteLine($"error: {e.Message}");
            if (parsed.GetValue(Verbose)) console.Error.WriteLine(e);
            return (int)ExitCodeOf(e.Code);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            console.Error.WriteLine("stopped");
            return (int)ExitCode.Cancelled;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Net.Sockets.SocketException)
        {
            console.Error.WriteLine($"error: {e.Message}");
            if (parsed.GetValue(Verbose)) console.Error.WriteLine(e);
            return (int)ExitCode.BadInput;
        }
        catch (Exception e)
        {
            console.Error.WriteLine($"error: {e.GetType().Name}: {e.Message}{(parsed.GetValue(Verbose) ? "" : " (run with --verbose for details)")}");
            if (parsed.GetValue(Verbose)) console.Error.WriteLine(e);
            return (int)ExitCode.Failure;
        }
    }
}

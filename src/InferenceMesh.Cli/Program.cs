using InferenceMesh.Cli;

return await CliApp.RunAsync(args, new SystemCliConsole());

using BenchmarkDotNet.Running;
using InferenceMesh.Benchmarks;

if (args.Length > 0 && args[0] == "p2p-throughput")
    return await Libp2pThroughput.RunAsync(args.Length > 1 ? int.Parse(args[1]) : 2048, args.Length > 2 ? int.Parse(args[2]) : 1024, args.Length > 3 ? int.Parse(args[3]) : new InferenceMesh.P2P.Muxing.YamuxOptions().MaxFrameSize >> 10);
if (args.Length > 0 && args[0] == "tokenizer-exactness")
    return TokenizerBenchmarks.CompareIds(Console.Out);
BenchmarkSwitcher.FromAssembly(typeof(Libp2pThroughput).Assembly).Run(args);
return 0;

using System.Buffers;
using BenchmarkDotNet.Attributes;
using InferenceMesh.Core;
using InferenceMesh.Protocol;

namespace InferenceMesh.Benchmarks;

/// <summary>Encoding and decoding one stage frame, socket-free: the protocol's own cost per hop.</summary>
[MemoryDiagnoser]
public class StageCodecBenchmarks
{
    private readonly ArrayBufferWriter<byte> _output = new(64 << 20);
    private Step _step = null!;
    private byte[] _frame = [];

    /// <summary>Positions × width of the activation: one decode token at dim 64 and 4096, a 128-token prefill at dim 4096.</summary>
    [Params("1x64", "1x4096", "128x4096")]
    public string Shape { get; set; } = "1x64";

    [GlobalSetup]
    public void Setup()
    {
        var parts = Shape.Split('x').Select(int.Parse).ToArray();
        var values = new float[parts[0] * parts[1]];
        new Random(1).NextBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        _step = new Step(1, "session-0123456789abcdef", 17, TensorData.FromFloats([1, parts[0], parts[1]], values), []);
        StageCodec.Write(_output, _step);
        _frame = _output.WrittenSpan.ToArray();
    }

    [Benchmark]
    public int Encode()
    {
        _output.ResetWrittenCount();
        StageCodec.Write(_output, _step);
        return _output.WrittenCount;
    }

    /// <summary>Decodes and, as a server does once the step has run, returns the activation's pooled buffer.</summary>
    [Benchmark]
    public StageMessage? Decode()
    {
        var sequence = new ReadOnlySequence<byte>(_frame);
        StageCodec.TryRead(ref sequence, new StageLimits(), out var message);
        (message as Step)?.Activation.Dispose();
        return message;
    }
}

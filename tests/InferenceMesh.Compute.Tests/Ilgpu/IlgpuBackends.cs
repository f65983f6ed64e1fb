using InferenceMesh.Compute.Ilgpu;
using Xunit.Abstractions;
using Xunit;

namespace InferenceMesh.Compute.Tests.Ilgpu;

/// <summary>
/// One accelerator per backend for the whole ILGPU test collection. Tests are written once and run per backend
/// (<see cref="All"/>); a backend this machine lacks is reported in the test's output as skipped, with the reason.
/// </summary>
public sealed class IlgpuBackends : IDisposable
{
    private readonly Dictionary<IlgpuBackend, IlgpuDevice> _devices = new();
    private readonly Lock _gate = new();

    public static TheoryData<IlgpuBackend> All => new() { IlgpuBackend.Cpu, IlgpuBackend.Cuda };

    /// <summary>
    /// The shared device of <paramref name="backend"/>. A backend this machine lacks skips the test (it is reported
    /// as skipped with the reason, so test counts show it) after writing "SKIPPED (no GPU): …" to the test output.
    /// </summary>
    public IlgpuDevice Get(IlgpuBackend backend, ITestOutputHelper output, [System.Runtime.CompilerServices.CallerMemberName] string test = "")
    {
        if (!IlgpuDevices.Probe().IsAvailable(backend, out var reason))
        {
            var line = $"SKIPPED (no GPU): {test} on {backend}: {reason}";
            output.WriteLine(line);
            Console.WriteLine(line);
            throw new SkipException(line);
        }
        lock (_gate)
        {
            if (!_devices.TryGetValue(backend, out var device))
                _devices[backend] = device = IlgpuDevices.Open(backend);
            output.WriteLine($"ran on {device}");
            return device;
        }
    }

    public void Dispose()
    {
        foreach (var device in _devices.Values) device.Dispose();
        _devices.Clear();
    }
}

[CollectionDefinition(Name)]
public sealed class IlgpuCollection : ICollectionFixture<IlgpuBackends>
{
    public const string Name = "ILGPU";
}

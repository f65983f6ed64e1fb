using ILGPU;
using ILGPU.Runtime;

namespace InferenceMesh.Compute.Ilgpu;

/// <summary>
/// An ILGPU context and one accelerator on it, disposed together (accelerator first, then the context).
/// </summary>
public sealed class IlgpuDevice : IDisposable
{
    internal IlgpuDevice(Context context, Accelerator accelerator, IlgpuBackend backend)
    {
        Context = context;
        Accelerator = accelerator;
        Backend = backend;
    }

    public Context Context { get; }
    public Accelerator Accelerator { get; }
    public IlgpuBackend Backend { get; }

    /// <summary>The device's name as ILGPU reports it, e.g. "NVIDIA H100 80GB HBM3" or "CPUAccelerator".</summary>
    public string Name => Accelerator.Name;

    /// <summary>Serializes work of the executors that share this device (one default stream, one bound context).</summary>
    internal Lock Gate { get; } = new();

    public void Dispose()
    {
        Accelerator.Dispose();
        Context.Dispose();
    }

    public override string ToString() => $"{Backend} ({Name})";
}

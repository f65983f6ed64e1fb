using System.Reflection;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using InferenceMesh.Compute.Ilgpu;
using Xunit.Abstractions;

namespace InferenceMesh.Compute.Tests.Ilgpu;

/// <summary>
/// Compiles every kernel to PTX with ILGPU's PTX backend, which needs no GPU: on a machine without one this is the
/// check that the CUDA path builds (e.g. that no kernel needs CUDA's libdevice, which <c>MathF.Exp</c> would). Running
/// the PTX needs a GPU; the per-backend tests do that where there is one.
/// </summary>
public sealed class PtxCompilationTests(ITestOutputHelper output)
{
    public static TheoryData<string> Kernels()
    {
        var data = new TheoryData<string>();
        foreach (var method in typeof(LlamaKernels).GetMethods(BindingFlags.Public | BindingFlags.Static).Where(m => m.Name.EndsWith("Kernel")))
            data.Add(method.Name);
        return data;
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void KernelCompilesToPTXForSm90(string name)
    {
        var method = typeof(LlamaKernels).GetMethod(name, BindingFlags.Public | BindingFlags.Static)!;
        using var context = Context.Create(builder => builder.Cuda());
        using var backend = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_90), CudaArchitecture.SM_90, CudaInstructionSet.ISA_80, null);
        var implicitlyGrouped = method.GetParameters()[0].ParameterType == typeof(Index1D);
        var entry = implicitlyGrouped
            ? EntryPointDescription.FromImplicitlyGroupedKernel(method)
            : EntryPointDescription.FromExplicitlyGroupedKernel(method);
        var kernel = (PTXCompiledKernel)backend.Compile(entry, KernelSpecialization.Empty);
        Assert.Contains(".entry", kernel.PTXAssembly);
        output.WriteLine($"{name}: {kernel.PTXAssembly.Length} chars of PTX");
        var approximate = kernel.PTXAssembly.Split('\n').Where(l => l.Contains(".approx") || l.Contains(".ftz")).Select(l => l.Trim()).ToList();
        foreach (var line in approximate) output.WriteLine(line);
        // Exactness against ONNX Runtime: IEEE-rounded division and square root only, no approximate or flush-to-zero math.
        Assert.Empty(approximate);
    }
}

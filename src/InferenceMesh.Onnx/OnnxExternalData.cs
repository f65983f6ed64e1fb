using Google.Protobuf;
using InferenceMesh.Core;
using Microsoft.Win32.SafeHandles;
using Onnx;

namespace InferenceMesh.Onnx;

/// <summary>
/// Initializers stored in external-data files (ONNX's <c>location</c>/<c>offset</c>/<c>length</c> entries, relative to
/// the model file's directory): finding them, copying a stage's own into a file of its own, and reading them back inline.
/// </summary>
public static class OnnxExternalData
{
    private const int CopyChunk = 1 << 20;

    public static bool IsExternal(TensorProto tensor) => tensor.DataLocation == TensorProto.Types.DataLocation.External;

    /// <summary>Whether any initializer of <paramref name="model"/> lives in an external file.</summary>
    public static bool HasExternal(ModelProto model) => model.Graph.Initializer.Any(IsExternal);

    /// <summary>The file, offset and length an external initializer names, checked against the file on disk.</summary>
    public static (string Path, long Offset, long Length) Locate(TensorProto tensor, string directory)
    {
        string? location = null;
        long offset = 0, length = -1;
        foreach (var entry in tensor.ExternalData)
        {
            switch (entry.Key)
            {
                case "location": location = entry.Value; break;
                case "offset": offset = long.Parse(entry.Value); break;
                case "length": length = long.Parse(entry.Value); break;
            }
        }
        if (location is null || location.Contains("..") || Path.IsPathRooted(location))
            throw new MeshException(MeshErrorCode.InvalidOnnx, $"initializer '{tensor.Name}' has no usable external-data location ('{location}')");
        var path = Path.Combine(directory, location);
        if (!File.Exists(path))
            throw new MeshException(MeshErrorCode.InvalidOnnx, $"initializer '{tensor.Name}' is stored in {location}, which is not in {directory}");
        var fileLength = new FileInfo(path).Length;
        if (length < 0) length = fileLength - offset;
        if (offset < 0 || offset + length > fileLength)
            throw new MeshException(MeshErrorCode.InvalidOnnx, $"initializer '{tensor.Name}' names bytes [{offset}, {offset + length}) of {location}, which has {fileLength}");
        return (path, offset, length);
    }

    /// <summary>
    /// Copies every external initializer of <paramref name="model"/> (resolved against <paramref name="sourceDirectory"/>)
    /// into <paramref name="dataPath"/> and points the model at it as <paramref name="location"/>. Returns false, writing
    /// nothing, when the model has no external initializers.
    /// </summary>
    public static bool Relocate(ModelProto model, string sourceDirectory, string dataPath, string location)
    {
        if (!HasExternal(model)) return false;
        using var writer = new ExternalDataWriter(dataPath, location);
        var buffer = new byte[CopyChunk];
        var handles = new Dictionary<string, SafeFileHandle>(StringComparer.Ordinal);
        try
        {
            var initializers = model.Graph.Initializer;
            for (var i = 0; i < initializers.Count; i++)
            {
                var tensor = initializers[i];
                if (!IsExternal(tensor)) continue;
                var (path, offset, length) = Locate(tensor, sourceDirectory);
                if (!handles.TryGetValue(path, out var handle))
                    handles[path] = handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
                var start = writer.BeginTensor();
                for (long done = 0; done < length;)
                {
                    var read = RandomAccess.Read(handle, buffer.AsSpan(0, (int)Math.Min(buffer.Length, length - done)), offset + done);
                    if (read == 0) throw new MeshException(MeshErrorCode.InvalidOnnx, $"{path} ended inside initializer '{tensor.Name}'");
                    writer.Write(buffer.AsSpan(0, read));
                    done += read;
                }
                initializers[i] = writer.EndTensor(tensor.Name, (DType)tensor.DataType, start, tensor.Dims.ToArray());
            }
        }
        finally
        {
            foreach (var handle in handles.Values) handle.Dispose();
        }
        return true;
    }

    /// <summary>Reads every external initializer into the model itself (for consumers that need the values, not ONNX Runtime).</summary>
    public static void Inline(ModelProto model, string directory)
    {
        foreach (var tensor in model.Graph.Initializer.Where(IsExternal))
        {
            var (path, offset, length) = Locate(tensor, directory);
            var bytes = new byte[length];
            using (var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read))
            {
                for (var done = 0L; done < length;)
                {
                    var read = RandomAccess.Read(handle, bytes.AsSpan((int)done), offset + done);
                    if (read == 0) throw new MeshException(MeshErrorCode.InvalidOnnx, $"{path} ended inside initializer '{tensor.Name}'");
                    done += read;
                }
            }
            tensor.ExternalData.Clear();
            tensor.DataLocation = TensorProto.Types.DataLocation.Default;
            tensor.RawData = UnsafeByteOperations.UnsafeWrap(bytes);
        }
    }
}

namespace InferenceMesh.Core;

public static class DTypeExtensions
{
    /// <summary>Size of one element in bytes.</summary>
    public static int ByteSize(this DType type) => type switch
    {
        DType.Float32 or DType.Int32 => 4,
        DType.Int64 => 8,
        DType.Bool => 1,
        DType.Float16 => 2,
        _ => throw new MeshException(MeshErrorCode.InvalidArgument, $"unsupported dtype {type}"),
    };
}

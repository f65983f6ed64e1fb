namespace InferenceMesh.Core;

/// <summary>Element types the mesh moves between stages. Values match ONNX's TensorProto.DataType.</summary>
public enum DType
{
    Float32 = 1,
    Int32 = 6,
    Int64 = 7,
    Bool = 9,
    Float16 = 10,
}

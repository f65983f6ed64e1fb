using InferenceMesh.Core;
using Onnx;

namespace InferenceMesh.Onnx.Split;

/// <summary>One stage cut from a model: its descriptor (file name, I/O, KV bindings; sha256 filled when written) and graph.</summary>
public sealed record SplitStage(StageDescriptor Descriptor, ModelProto Model);

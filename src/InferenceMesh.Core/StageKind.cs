using System.Text.Json.Serialization;

namespace InferenceMesh.Core;

/// <summary>What a stage computes: the client-side embedding, a range of blocks, the client-side final norm and LM head, or the whole unsplit model.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<StageKind>))]
public enum StageKind { Head, Blocks, Tail, Whole }

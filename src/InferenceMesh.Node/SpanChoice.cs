using InferenceMesh.Core;

namespace InferenceMesh.Node;

/// <summary>The blocks a node serves and, in words, why (given explicitly, or chosen by Petals' rule).</summary>
public sealed record SpanChoice(BlockRange Blocks, string Reason);

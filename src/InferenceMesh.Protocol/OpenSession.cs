using InferenceMesh.Core;

namespace InferenceMesh.Protocol;

/// <summary>Client → server: reserve a KV cache for <paramref name="SessionId"/> over <paramref name="Blocks"/> of <paramref name="ModelId"/>.</summary>
/// <param name="MaxLength">Positions the session may reach; the server reserves KV room for that many.</param>
public sealed record OpenSession(ulong RequestId, string SessionId, string ModelId, BlockRange Blocks, int MaxLength) : StageMessage
{
    public override string Kind => "open";
}

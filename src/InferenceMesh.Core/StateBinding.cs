namespace InferenceMesh.Core;

/// <summary>One KV-cache tensor of a stage: fed back as <see cref="Past"/> from the <see cref="Present"/> of the previous step.</summary>
public sealed record StateBinding(string Past, string Present);

using InferenceMesh.Core;

namespace InferenceMesh.Client;

/// <summary>
/// A server of the session was caught lying and banned. A caller of <see cref="InferenceSession.StepAsync"/> sees it as a
/// <see cref="MeshException"/> with <see cref="MeshErrorCode.IntegrityMismatch"/>; <see cref="MeshClient"/>'s generation
/// methods start again without the liar.
/// </summary>
internal sealed class VerificationFailedException(string message) : MeshException(MeshErrorCode.IntegrityMismatch, message);

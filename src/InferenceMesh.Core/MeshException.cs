namespace InferenceMesh.Core;

/// <summary>
/// The one exception type the mesh throws for bad input or a broken contract. The CLI prints
/// <see cref="Exception.Message"/> as a single line and exits non-zero; code is for programs.
/// </summary>
public class MeshException : Exception
{
    public MeshException(MeshErrorCode code, string message, Exception? inner = null)
        : base(message, inner) => Code = code;

    public MeshErrorCode Code { get; }
}

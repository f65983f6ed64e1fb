using System.IO.Pipelines;

namespace InferenceMesh.Protocol.Tests;

/// <summary>One end of an in-memory stream: what it reads and what it writes.</summary>
internal sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
{
    public PipeReader Input => input;
    public PipeWriter Output => output;
}

using System.Text;

namespace InferenceMesh.Onnx.Tokenizer;

/// <summary>Turns a stream of token bytes into text, holding back an incomplete UTF-8 sequence until its last byte arrives.</summary>
public sealed class StreamingTextDecoder
{
    private readonly Decoder _decoder = Encoding.UTF8.GetDecoder();
    private readonly char[] _buffer = new char[1024];

    public string Append(ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty) return string.Empty;
        var builder = new StringBuilder();
        while (!bytes.IsEmpty)
        {
            var chunk = bytes[..Math.Min(bytes.Length, 256)];
            var count = _decoder.GetChars(chunk, _buffer, flush: false);
            foreach (var ch in _buffer.AsSpan(0, count))
                if (!char.IsControl(ch) || char.IsWhiteSpace(ch)) builder.Append(ch);
            bytes = bytes[chunk.Length..];
        }
        return builder.ToString();
    }
}

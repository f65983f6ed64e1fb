using System.Buffers;
using InferenceMesh.Core;

namespace InferenceMesh.Core.Tests;

public sealed class UnsignedVarintTests
{
    [Theory]
    [InlineData(0UL, "00")]
    [InlineData(1UL, "01")]
    [InlineData(127UL, "7F")]
    [InlineData(128UL, "8001")]
    [InlineData(255UL, "FF01")]
    [InlineData(300UL, "AC02")]
    [InlineData(16384UL, "808001")]
    public void EncodesTheMultiformatsTestVectors(ulong value, string hex)
    {
        var buffer = new byte[9];
        var length = UnsignedVarint.Write(buffer, value);
        Assert.Equal(hex, Convert.ToHexString(buffer, 0, length));
        Assert.Equal(length, UnsignedVarint.SizeOf(value));
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(buffer, 0, length));
        Assert.True(UnsignedVarint.TryRead(ref reader, out var decoded));
        Assert.Equal(value, decoded);
    }

    [Fact]
    public void IncompleteVarintConsumesNothing()
    {
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>([0x80, 0x80]));
        Assert.False(UnsignedVarint.TryRead(ref reader, out _));
        Assert.Equal(0, reader.Consumed);
    }

    [Theory]
    [InlineData("8000")]
    [InlineData("FFFFFFFFFFFFFFFFFF01")]
    public void RefusesNonMinimalAndOverlongVarints(string hex)
    {
        var bytes = Convert.FromHexString(hex);
        var error = Assert.Throws<MeshException>(() =>
        {
            var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(bytes));
            UnsignedVarint.TryRead(ref reader, out _);
        });
        Assert.Equal(MeshErrorCode.ProtocolViolation, error.Code);
    }

    [Fact]
    public void TryDecodeReadsAWholeVarintAndItsLength()
    {
        Assert.True(UnsignedVarint.TryDecode(Convert.FromHexString("AC02FF"), out var value, out var length));
        Assert.Equal(300UL, value);
        Assert.Equal(2, length);
    }

    [Theory]
    [InlineData("")]
    [InlineData("80")]
    [InlineData("8000")]
    [InlineData("FFFFFFFFFFFFFFFFFF01")]
    public void TryDecodeRefusesTruncatedNonMinimalAndOverlongVarintsWithoutThrowing(string hex)
    {
        Assert.False(UnsignedVarint.TryDecode(Convert.FromHexString(hex), out _, out var length));
        Assert.Equal(0, length);
    }
}

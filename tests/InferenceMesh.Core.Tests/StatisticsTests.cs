namespace InferenceMesh.Core.Tests;

public sealed class StatisticsTests
{
    [Fact]
    public void MedianIsTheMiddleOfUnsortedValuesAndTheLowerMiddleForAnEvenCount()
    {
        Assert.Equal(3.0, Statistics.Median([5.0, 1.0, 3.0]));
        Assert.Equal(2.0, Statistics.Median([4.0, 1.0, 3.0, 2.0]));
        Assert.Equal(7.0, Statistics.Median([7.0]));
    }

    [Fact]
    public void PercentileTakesTheNearestRank()
    {
        var values = Enumerable.Range(1, 100).Select(v => (double)v).Reverse().ToList();
        Assert.Equal(99.0, Statistics.Percentile(values, 0.99));
        Assert.Equal(1.0, Statistics.Percentile(values, 0.0));
        Assert.Equal(100.0, Statistics.Percentile(values, 1.0));
    }

    [Fact]
    public void NoValuesGiveNaNAndAFractionOutsideZeroToOneIsRefused()
    {
        Assert.True(double.IsNaN(Statistics.Median([])));
        Assert.Throws<ArgumentOutOfRangeException>(() => Statistics.Percentile([1.0], 1.5));
    }
}

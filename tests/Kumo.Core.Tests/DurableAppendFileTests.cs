using Kumo.Core.Files;

namespace Kumo.Core.Tests;

public sealed class DurableAppendFileTests : IDisposable
{
    private const int Size = 64 * 1024;
    private readonly string _dir = Directory.CreateTempSubdirectory("kumo-append-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void OnThisMachinesFileSystem_TheFileIsWrittenWithDirectIo()
    {
        using var file = DurableAppendFile.Create(Path.Combine(_dir, "a"), Size);
        Assert.True(file.IsDirect, $"{_dir} refused O_DIRECT; the append path under test would be the fallback");
    }

    [Theory]
    [InlineData(true, true)]
    [InlineData(false, true)]
    [InlineData(true, false)] // the benchmarks' not-durable journal: same bytes, no sync
    public void Appends_OfEverySize_ReadBackInOrder_WithZerosAfter(bool allowDirectIo, bool sync)
    {
        var path = Path.Combine(_dir, "a");
        var expected = new List<byte>();
        var random = new Random(7);
        using (var file = DurableAppendFile.Create(path, Size, allowDirectIo, sync))
        {
            Assert.Equal(allowDirectIo && sync, file.IsDirect);
            // Sizes that end inside a block, exactly on one, span several, and outgrow the first buffer.
            foreach (var length in new[] { 1, 200, 4095, 1, 4096, 3, 9000, 0, 12288, 17 })
            {
                var bytes = new byte[length];
                random.NextBytes(bytes);
                bytes.AsSpan().Replace((byte)0, (byte)1);
                file.Append(bytes);
                expected.AddRange(bytes);
                Assert.Equal(expected.Count, file.Length);
            }
        }

        var content = File.ReadAllBytes(path);
        Assert.Equal(Size, content.Length);
        Assert.Equal(expected.ToArray(), content[..expected.Count]);
        Assert.False(content.AsSpan(expected.Count).ContainsAnyExcept((byte)0), "past the end the file must hold zeros");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AnAppendPastTheSize_GrowsTheFile(bool allowDirectIo)
    {
        var path = Path.Combine(_dir, "a");
        var big = new byte[Size + 5000];
        Array.Fill(big, (byte)'x');
        using (var file = DurableAppendFile.Create(path, Size, allowDirectIo))
        {
            file.Append("head\n"u8);
            file.Append(big);
            file.Append("tail\n"u8);
        }

        var content = File.ReadAllBytes(path);
        var written = 5 + big.Length + 5;
        Assert.True(content.Length >= written);
        Assert.Equal("head\n"u8.ToArray(), content[..5]);
        Assert.Equal(big, content[5..(5 + big.Length)]);
        Assert.Equal("tail\n"u8.ToArray(), content[(5 + big.Length)..written]);
        Assert.False(content.AsSpan(written).ContainsAnyExcept((byte)0));
    }

    [Fact]
    public void Create_RefusesAnExistingFile_AndLeavesItAlone()
    {
        var path = Path.Combine(_dir, "a");
        File.WriteAllText(path, "keep");
        Assert.Throws<IOException>(() => DurableAppendFile.Create(path, Size));
        Assert.Equal("keep", File.ReadAllText(path));
    }
}

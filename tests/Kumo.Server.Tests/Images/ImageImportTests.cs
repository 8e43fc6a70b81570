using System.Diagnostics;
using System.Formats.Tar;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Tests.TestSupport;
using Microsoft.Extensions.DependencyInjection;

namespace Kumo.Server.Tests.Images;

/// <summary>
/// Imports through the real API with real qemu-img: good disks are stored checksummed, hostile or broken uploads are
/// refused with a problem and leave no file in the store or its work directory and no catalogue row.
/// </summary>
public sealed class ImageImportTests : IAsyncLifetime
{
    private TestServer _server = null!;
    private readonly TempDirectory _fixtures = new();

    public async Task InitializeAsync() => _server = await TestServer.StartAsync();

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _fixtures.Dispose();
    }

    private string ImagesDir => Path.Combine(_server.StateDir, "images");

    private static async Task RunAsync(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        Assert.True(p.ExitCode == 0, $"{file} {string.Join(' ', args)}: {err}");
    }

    /// <summary>A raw 8 MiB disk with an MBR boot signature and some data, so every converter has something to carry.</summary>
    private string RawDisk()
    {
        var path = Path.Combine(_fixtures.Path, "disk.raw");
        var bytes = new byte[8 * 1024 * 1024];
        RandomNumberGenerator.Fill(bytes.AsSpan(4096, 65536));
        bytes[510] = 0x55;
        bytes[511] = 0xaa;
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private async Task<HttpResponseMessage> ImportAsync(string path, string name)
    {
        await using var f = File.OpenRead(path);
        using var content = new StreamContent(f);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        return await _server.Client.PostAsync($"/api/v1/images/import?name={name}", content);
    }

    private async Task<Operation> WaitAsync(Operation op)
    {
        var deadline = DateTime.UtcNow.AddMinutes(3);
        while (!OperationStatuses.IsFinal(op.Status) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100);
            op = (await _server.Client.GetFromJsonAsync<Operation>($"/api/v1/operations/{op.Id}", Problems.Json))!;
        }
        return op;
    }

    private void AssertNothingLeft(string name)
    {
        Assert.Empty(Directory.Exists(ImagesDir) ? Directory.GetFiles(ImagesDir, "*.qcow2") : []);
        var tmp = Path.Combine(ImagesDir, ".tmp");
        Assert.Empty(Directory.Exists(tmp) ? Directory.GetFileSystemEntries(tmp) : []);
        Assert.Equal(0L, _server.Database.ReadAsync(c => Dapper.SqlMapper.ExecuteScalar<long>(c, "SELECT COUNT(*) FROM images WHERE name = @name", new { name }), default).Result);
    }

    private async Task<Image> ImportOkAsync(string path, string name)
    {
        using var r = await ImportAsync(path, name);
        Assert.True(r.StatusCode == HttpStatusCode.Accepted, await r.Content.ReadAsStringAsync());
        var op = await WaitAsync((await r.Content.ReadFromJsonAsync<Operation>(Problems.Json))!);
        Assert.True(op.Status == OperationStatuses.Succeeded, op.Error);
        return (await _server.Client.GetFromJsonAsync<Image>($"/api/v1/images/{name}", Problems.Json))!;
    }

    [Theory]
    [InlineData("qcow2", "qcow2")]
    [InlineData("vmdk", "vmdk")]
    [InlineData("vpc", "vhd")]
    [InlineData("vhdx", "vhdx")]
    [InlineData("raw", "raw")]
    public async Task Import_EachDiskFormat_IsDetectedByContentAndStoredAsChecksummedQcow2(string qemuFormat, string expected)
    {
        var raw = RawDisk();
        // No telling extension: the format must come from the bytes.
        var upload = Path.Combine(_fixtures.Path, "upload.bin");
        if (qemuFormat == "raw") File.Copy(raw, upload);
        else await RunAsync("qemu-img", "convert", "-f", "raw", "-O", qemuFormat, raw, upload);

        var image = await ImportOkAsync(upload, "img-" + expected);
        Assert.Equal(expected, image.SourceFormat);
        var stored = Path.Combine(ImagesDir, image.Id + ".qcow2");
        Assert.Equal(Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(stored))).ToLowerInvariant(), image.Sha256);
        Assert.True(image.VirtualSizeBytes >= 8 * 1024 * 1024);

        // Export round trip: raw out equals the raw that went in.
        var back = await _server.Client.GetByteArrayAsync($"/api/v1/images/img-{expected}/content?format=raw");
        Assert.Equal(File.ReadAllBytes(raw).AsSpan(0, 8 * 1024 * 1024).ToArray(), back.AsSpan(0, 8 * 1024 * 1024).ToArray());

        using var del = await _server.Client.DeleteAsync($"/api/v1/images/img-{expected}");
        Assert.Equal(HttpStatusCode.NoContent, del.StatusCode);
        AssertNothingLeft("img-" + expected);
    }

    [Fact]
    public async Task Import_VagrantBoxAndOva_UnpackTheirDisk()
    {
        var raw = RawDisk();
        var box = Path.Combine(_fixtures.Path, "box.img");
        await RunAsync("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, box);
        var boxTar = Path.Combine(_fixtures.Path, "x.box");
        await using (var f = File.Create(boxTar))
        await using (var gz = new System.IO.Compression.GZipStream(f, System.IO.Compression.CompressionLevel.Fastest))
        await using (var tar = new TarWriter(gz))
        {
            var meta = Path.Combine(_fixtures.Path, "metadata.json");
            await File.WriteAllTextAsync(meta, """{"provider":"libvirt","format":"qcow2","virtual_size":1}""");
            await tar.WriteEntryAsync(meta, "metadata.json");
            await tar.WriteEntryAsync(box, "box.img");
        }
        Assert.Equal("box", (await ImportOkAsync(boxTar, "from-box")).SourceFormat);

        var vmdk = Path.Combine(_fixtures.Path, "disk1.vmdk");
        await RunAsync("qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, vmdk);
        var ova = Path.Combine(_fixtures.Path, "x.ova");
        await using (var f = File.Create(ova))
        await using (var tar = new TarWriter(f))
        {
            var ovf = Path.Combine(_fixtures.Path, "vm.ovf");
            await File.WriteAllTextAsync(ovf, """<?xml version="1.0"?><Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"><References><File ovf:href="disk1.vmdk" ovf:id="file1"/></References></Envelope>""");
            await tar.WriteEntryAsync(ovf, "vm.ovf");
            await tar.WriteEntryAsync(vmdk, "disk1.vmdk");
        }
        Assert.Equal("ova", (await ImportOkAsync(ova, "from-ova")).SourceFormat);
    }

    [Fact]
    public async Task Import_Qcow2WithBackingFileEscapingToEtcShadow_IsRefusedAndLeavesNothing()
    {
        var evil = Path.Combine(_fixtures.Path, "evil");
        await RunAsync("qemu-img", "create", "-f", "qcow2", "-b", "/etc/shadow", "-F", "raw", evil);
        using var r = await ImportAsync(evil, "evil");
        var p = await r.AssertProblemAsync(HttpStatusCode.UnprocessableEntity, ProblemTypes.ImageRejected);
        Assert.Contains("backing file", p.Detail);
        Assert.Contains("/etc/shadow", p.Detail);
        AssertNothingLeft("evil");
    }

    [Fact]
    public async Task Import_TruncatedQcow2_IsRefused()
    {
        var raw = RawDisk();
        // Data all through the disk, so the cut removes clusters the tables point at.
        var bytes = File.ReadAllBytes(raw);
        RandomNumberGenerator.Fill(bytes.AsSpan(1024 * 1024, 4 * 1024 * 1024));
        File.WriteAllBytes(raw, bytes);
        var full = Path.Combine(_fixtures.Path, "full.qcow2");
        await RunAsync("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, full);
        var cut = Path.Combine(_fixtures.Path, "cut");
        File.WriteAllBytes(cut, File.ReadAllBytes(full).AsSpan(0, (int)(new FileInfo(full).Length / 3)).ToArray());
        using var r = await ImportAsync(cut, "cut");
        var p = await r.AssertProblemAsync(HttpStatusCode.UnprocessableEntity, ProblemTypes.ImageRejected);
        Assert.Contains("corrupt", p.Detail);
        AssertNothingLeft("cut");
    }

    [Theory]
    [InlineData("../escape.img", "path traversal")]
    [InlineData("/abs.img", "absolute path")]
    [InlineData("link", "symbolic link")]
    [InlineData("hard", "hard link")]
    public async Task Import_HostileTarMembers_AreRefusedAndLeaveNothing(string member, string expected)
    {
        var box = Path.Combine(_fixtures.Path, "hostile.box");
        await using (var f = File.Create(box))
        await using (var tar = new TarWriter(f, TarEntryFormat.Pax))
        {
            var meta = new PaxTarEntry(TarEntryType.RegularFile, "metadata.json") { DataStream = new MemoryStream("""{"provider":"libvirt"}"""u8.ToArray()) };
            await tar.WriteEntryAsync(meta);
            TarEntry bad = member switch
            {
                "link" => new PaxTarEntry(TarEntryType.SymbolicLink, "box.img") { LinkName = "/etc/shadow" },
                "hard" => new PaxTarEntry(TarEntryType.HardLink, "box.img") { LinkName = "metadata.json" },
                _ => new PaxTarEntry(TarEntryType.RegularFile, member) { DataStream = new MemoryStream(new byte[1024]) },
            };
            await tar.WriteEntryAsync(bad);
        }
        using var r = await ImportAsync(box, "hostile");
        var p = await r.AssertProblemAsync(HttpStatusCode.UnprocessableEntity, ProblemTypes.ImageRejected);
        Assert.Contains(expected, p.Detail);
        AssertNothingLeft("hostile");
        Assert.False(File.Exists(Path.Combine(ImagesDir, "escape.img")));
        Assert.False(File.Exists("/abs.img"));
    }

    [Fact]
    public async Task Import_DecompressionBomb_StopsAtTheCapAndLeavesNothing()
    {
        await _server.DisposeAsync();
        _server = await TestServer.StartAsync(b => b.Services.AddSingleton(Microsoft.Extensions.Options.Options.Create(
            new Kumo.Server.Images.ImageOptions { MaxImageBytes = 16 * 1024 * 1024 })));
        var bomb = Path.Combine(_fixtures.Path, "bomb.box");
        await using (var f = File.Create(bomb))
        await using (var gz = new System.IO.Compression.GZipStream(f, System.IO.Compression.CompressionLevel.SmallestSize))
        await using (var tar = new TarWriter(gz, TarEntryFormat.Pax))
        {
            await tar.WriteEntryAsync(new PaxTarEntry(TarEntryType.RegularFile, "metadata.json") { DataStream = new MemoryStream("""{"provider":"libvirt"}"""u8.ToArray()) });
            await tar.WriteEntryAsync(new PaxTarEntry(TarEntryType.RegularFile, "box.img") { DataStream = new ZeroStream(256L * 1024 * 1024) });
        }
        Assert.True(new FileInfo(bomb).Length < 16 * 1024 * 1024, "the bomb itself is under the cap");
        using var r = await ImportAsync(bomb, "bomb");
        var p = await r.AssertProblemAsync(HttpStatusCode.RequestEntityTooLarge, ProblemTypes.ImageTooLarge);
        Assert.Contains("decompression bomb", p.Detail);
        AssertNothingLeft("bomb");
    }

    [Fact]
    public async Task Import_UnknownFormat_IsRefusedByContent_AndBuiltInsCannotBeRemovedOrExported()
    {
        var text = Path.Combine(_fixtures.Path, "disk.qcow2");
        await File.WriteAllTextAsync(text, "hello, I am not a disk");
        using var r = await ImportAsync(text, "text");
        var p = await r.AssertProblemAsync(HttpStatusCode.UnprocessableEntity, ProblemTypes.ImageRejected);
        Assert.Contains("unknown format", p.Detail);
        AssertNothingLeft("text");
        using var del = await _server.Client.DeleteAsync("/api/v1/images/tiny");
        await del.AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.InvalidState);
        using var get = await _server.Client.GetAsync("/api/v1/images/tiny/content");
        await get.AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.InvalidState);
    }

    private sealed class ZeroStream(long length) : Stream
    {
        private long _pos;
        public override bool CanRead => true;
        public override bool CanSeek => true;
        public override bool CanWrite => false;
        public override long Length => length;
        public override long Position { get => _pos; set => _pos = value; }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => _pos = origin == SeekOrigin.Begin ? offset : origin == SeekOrigin.End ? length + offset : _pos + offset;
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override int Read(byte[] buffer, int offset, int count)
        {
            var n = (int)Math.Min(count, length - _pos);
            Array.Clear(buffer, offset, n);
            _pos += n;
            return n;
        }
    }
}

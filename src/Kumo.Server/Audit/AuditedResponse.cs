using System.Buffers;
using System.IO.Pipelines;
using Kumo.Core;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Kumo.Server.Audit;

/// <summary>
/// The response body of one request, held back until the request's audit entry is durable. Ordinary responses are
/// buffered whole, so the entry carries the final status and nothing reaches the client before it is on disk.
/// Streams cannot wait for their end: the entry ("stream-started") is written just before their first byte, as is
/// the entry of a body too large to hold (with the status then fixed). Agent gRPC calls are never buffered, because
/// grpc-dotnet decides between trailers and a trailers-only answer by whether the response has started.
/// </summary>
internal sealed class AuditedResponse : IHttpResponseBodyFeature, IDisposable
{
    /// <summary>Bodies up to this size are held whole; past it the entry is written and the rest streams through.</summary>
    internal const int HoldLimit = 1 << 20;

    private readonly AuditMiddleware _audit;
    private readonly HttpContext _context;
    private readonly IHttpResponseBodyFeature _inner;
    private readonly bool _passOnStart;
    private readonly BodyStream _stream;
    private PipeWriter? _writer;
    private byte[]? _buffer;
    private int _length;
    private int _position;
    private State _state;
    private bool _streamRequested;

    public AuditedResponse(AuditMiddleware audit, HttpContext context, IHttpResponseBodyFeature inner, DateTimeOffset arrived)
    {
        _audit = audit;
        _context = context;
        _inner = inner;
        Arrived = arrived;
        _passOnStart = context.Request.ContentType?.StartsWith("application/grpc", StringComparison.Ordinal) == true;
        _stream = new BodyStream(this);
    }

    private enum State
    {
        Holding,
        Passing,
        Failed,
    }

    public DateTimeOffset Arrived { get; }
    public HttpContext Context => _context;
    public bool IsGrpc => _passOnStart;

    /// <summary>The entry is durable (or its write failed and the answer is withheld).</summary>
    public bool Recorded => _state != State.Holding;

    public bool AuditFailed => _state == State.Failed;

    public Stream Stream => _stream;

    public PipeWriter Writer => _writer ??= PipeWriter.Create(_stream, new StreamPipeWriterOptions(leaveOpen: true));

    public void DisableBuffering()
    {
        _streamRequested = true;
        _inner.DisableBuffering();
    }

    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        // HttpResponse.WriteAsync(string) starts the response before every write: a held response starts when released.
        if (_state == State.Holding && !MustStream())
            return;
        await ReleaseAsync(StreamOutcome(), null, cancellationToken);
        if (_state == State.Passing)
            await _inner.StartAsync(cancellationToken);
    }

    public Task SendFileAsync(string path, long offset, long? count, CancellationToken cancellationToken = default) =>
        SendFileFallback.SendFileAsync(_stream, path, offset, count, cancellationToken);

    public async Task CompleteAsync()
    {
        await FinishAsync();
        await _inner.CompleteAsync();
    }

    /// <summary>The handler is done: write the entry with the final status if that has not happened, then release the body.</summary>
    public async Task FinishAsync()
    {
        if (_writer is not null)
            await _writer.CompleteAsync();
        if (_state != State.Holding)
            return;
        var response = _context.Response;
        if (_length > 0 && response.ContentLength is null && !response.Headers.ContainsKey("Transfer-Encoding"))
            response.ContentLength = _length;
        await ReleaseAsync(null, null, CancellationToken.None);
    }

    /// <summary>Writes the entry (once) and lets the held bytes and everything after them through.</summary>
    public async Task ReleaseAsync(string? outcome, int? status, CancellationToken cancellationToken)
    {
        if (_state != State.Holding)
            return;
        try
        {
            await _audit.RecordAsync(this, outcome, status);
        }
        catch
        {
            _state = State.Failed;
            throw;
        }
        _state = State.Passing;
        if (_length > 0)
        {
            try
            {
                await _inner.Stream.WriteAsync(_buffer.AsMemory(0, _length), cancellationToken);
            }
            catch (Exception e) when (e is OperationCanceledException or IOException && _context.RequestAborted.IsCancellationRequested)
            {
                // The caller left; the entry already says so.
            }
        }
        ReturnBuffer();
    }

    /// <summary>The request failed past every handler: drop what was held and record the failure.</summary>
    public Task AbandonAsync()
    {
        ReturnBuffer();
        return ReleaseAsync(AuditOutcomes.Error, StatusCodes.Status500InternalServerError, CancellationToken.None);
    }

    public void Dispose() => ReturnBuffer();

    // ---- what the body stream does

    private string? StreamOutcome()
    {
        if (!_passOnStart)
            return AuditOutcomes.StreamStarted;
        return _audit.IsStreamingCall(_context) ? AuditOutcomes.StreamStarted : null;
    }

    /// <summary>True when the next byte must not wait for the end of the request.</summary>
    private bool MustStream()
    {
        if (_passOnStart || _streamRequested)
            return true;
        var type = _context.Response.ContentType;
        return type is not null && (type.StartsWith("text/event-stream", StringComparison.OrdinalIgnoreCase)
            || type.StartsWith("application/x-ndjson", StringComparison.OrdinalIgnoreCase));
    }

    private async ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        switch (_state)
        {
            case State.Passing:
                await _inner.Stream.WriteAsync(data, cancellationToken);
                return;
            case State.Failed:
                return; // the middleware answers 500 instead
        }
        if (MustStream())
        {
            await ReleaseAsync(StreamOutcome(), null, cancellationToken);
            await _inner.Stream.WriteAsync(data, cancellationToken);
            return;
        }
        Hold(data.Span);
        if (_length > HoldLimit)
            await ReleaseAsync(null, null, cancellationToken);
    }

    private void Write(ReadOnlySpan<byte> data)
    {
        if (_state == State.Holding && !MustStream())
        {
            Hold(data);
            if (_length > HoldLimit)
                ReleaseAsync(null, null, CancellationToken.None).GetAwaiter().GetResult();
            return;
        }
        if (_state == State.Holding)
            ReleaseAsync(StreamOutcome(), null, CancellationToken.None).GetAwaiter().GetResult();
        if (_state == State.Passing)
            _inner.Stream.Write(data);
    }

    private async Task FlushAsync(CancellationToken cancellationToken)
    {
        if (_state == State.Holding && MustStream())
            await ReleaseAsync(StreamOutcome(), null, cancellationToken);
        if (_state == State.Passing)
            await _inner.Stream.FlushAsync(cancellationToken);
    }

    // ---- the held bytes; seekable so HttpResponse.Clear() can drop a half-written body before an error is written

    private bool CanSeek => _state == State.Holding;

    private void Hold(ReadOnlySpan<byte> data)
    {
        var end = _position + data.Length;
        Reserve(end);
        data.CopyTo(_buffer.AsSpan(_position));
        _position = end;
        _length = Math.Max(_length, end);
    }

    private void Reserve(int size)
    {
        if (_buffer is not null && _buffer.Length >= size)
            return;
        var next = ArrayPool<byte>.Shared.Rent(Math.Max(size, Math.Max(4096, (_buffer?.Length ?? 0) * 2)));
        if (_buffer is not null)
        {
            _buffer.AsSpan(0, _length).CopyTo(next);
            ArrayPool<byte>.Shared.Return(_buffer);
        }
        next.AsSpan(_length).Clear();
        _buffer = next;
    }

    private void SetLength(long value)
    {
        if (!CanSeek || value is < 0 or > HoldLimit)
            throw new NotSupportedException("the response body can no longer be truncated");
        Reserve((int)value);
        if (value < _length)
            _buffer.AsSpan((int)value, _length - (int)value).Clear();
        _length = (int)value;
        _position = Math.Min(_position, _length);
    }

    private long Seek(long offset, SeekOrigin origin)
    {
        var target = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => _position + offset,
            _ => _length + offset,
        };
        if (!CanSeek || target is < 0 or > HoldLimit)
            throw new NotSupportedException("the response body can no longer be repositioned");
        Reserve((int)target);
        _position = (int)target;
        return target;
    }

    private void ReturnBuffer()
    {
        if (_buffer is null)
            return;
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = null;
        _length = 0;
        _position = 0;
    }

    /// <summary>The Stream face of <see cref="AuditedResponse"/> (HttpResponse.Body).</summary>
    private sealed class BodyStream(AuditedResponse owner) : Stream
    {
        public override bool CanRead => false;
        public override bool CanSeek => owner.CanSeek;
        public override bool CanWrite => true;
        public override long Length => owner.CanSeek ? owner._length : throw new NotSupportedException();

        public override long Position
        {
            get => owner.CanSeek ? owner._position : throw new NotSupportedException();
            set => owner.Seek(value, SeekOrigin.Begin);
        }

        public override void Flush() => FlushAsync(CancellationToken.None).GetAwaiter().GetResult();

        public override Task FlushAsync(CancellationToken cancellationToken) => owner.FlushAsync(cancellationToken);

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => owner.Seek(offset, origin);

        public override void SetLength(long value) => owner.SetLength(value);

        public override void Write(byte[] buffer, int offset, int count) => owner.Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer) => owner.Write(buffer);

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            owner.WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) =>
            owner.WriteAsync(buffer, cancellationToken);
    }
}

/// <summary>A WebSocket (or other upgrade) is a stream too: its entry is written before the 101 goes out.</summary>
internal sealed class AuditedUpgrade(AuditedResponse response, IHttpUpgradeFeature inner) : IHttpUpgradeFeature
{
    public bool IsUpgradableRequest => inner.IsUpgradableRequest;

    public async Task<Stream> UpgradeAsync()
    {
        await response.ReleaseAsync(AuditOutcomes.StreamStarted, StatusCodes.Status101SwitchingProtocols, CancellationToken.None);
        return await inner.UpgradeAsync();
    }
}

/// <summary>WebSockets over HTTP/2 (extended CONNECT), likewise.</summary>
internal sealed class AuditedExtendedConnect(AuditedResponse response, IHttpExtendedConnectFeature inner) : IHttpExtendedConnectFeature
{
    public bool IsExtendedConnect => inner.IsExtendedConnect;
    public string? Protocol => inner.Protocol;

    public async ValueTask<Stream> AcceptAsync()
    {
        await response.ReleaseAsync(AuditOutcomes.StreamStarted, StatusCodes.Status200OK, CancellationToken.None);
        return await inner.AcceptAsync();
    }
}

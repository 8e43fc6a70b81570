using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Kumo.Core;

namespace Kumo.Client;

public sealed partial class KumoClient
{
    public Task<Operation> GetOperationAsync(string id, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Operation>(HttpMethod.Get, $"api/v1/operations/{Escape(id)}", cancellationToken);

    /// <summary>
    /// Streams an operation's progress events (server-sent events) until one carries a final status or the
    /// server ends the stream. A broken stream throws <see cref="KumoApiException"/>.
    /// </summary>
    public async IAsyncEnumerable<OperationEvent> WatchOperationAsync(string id, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"api/v1/operations/{Escape(id)}/events");
        request.Headers.Accept.ParseAdd("text/event-stream");
        using var response = await SendRawAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        Stream stream;
        try
        {
            stream = await response.Content.ReadAsStreamAsync(cancellationToken);
        }
        catch (Exception e) when (e is HttpRequestException or IOException)
        {
            throw StreamBroke(id, e);
        }
        await using var _ = stream;
        await using var items = SseParser.Create(stream).EnumerateAsync(cancellationToken).GetAsyncEnumerator(cancellationToken);
        while (true)
        {
            try
            {
                if (!await items.MoveNextAsync())
                    yield break;
            }
            catch (Exception e) when (e is HttpRequestException or IOException && !cancellationToken.IsCancellationRequested)
            {
                throw StreamBroke(id, e);
            }
            if (string.IsNullOrWhiteSpace(items.Current.Data))
                continue;
            var ev = ParseEvent(id, items.Current.Data);
            yield return ev;
            if (OperationStatuses.IsFinal(ev.Status))
                yield break;
        }
    }

    /// <summary>
    /// Follows an operation to its final status and returns it. Progress comes from the event stream; if that
    /// breaks or is unavailable, polls GET /operations/{id} every <see cref="PollInterval"/> instead.
    /// A failed operation is returned, not thrown: look at <see cref="Operation.Status"/> and <see cref="Operation.Error"/>.
    /// </summary>
    public async Task<Operation> WaitOperationAsync(string id, IProgress<OperationEvent>? progress = null, CancellationToken cancellationToken = default)
    {
        var reporter = new ChangeReporter(progress);
        try
        {
            await foreach (var ev in WatchOperationAsync(id, cancellationToken))
                reporter.Report(ev);
        }
        catch (KumoApiException) when (!cancellationToken.IsCancellationRequested)
        {
            // The stream is a convenience; polling below is the source of truth either way.
        }
        return await PollOperationAsync(id, reporter, cancellationToken);
    }

    /// <summary>How long a wait rides out kumod being unreachable (a supervised restart) before giving up.</summary>
    public TimeSpan ReconnectWindow { get; set; } = TimeSpan.FromSeconds(60);

    private async Task<Operation> PollOperationAsync(string id, ChangeReporter reporter, CancellationToken cancellationToken)
    {
        DateTime? unreachableSince = null;
        while (true)
        {
            Operation operation;
            try
            {
                operation = await GetOperationAsync(id, cancellationToken);
                unreachableSince = null;
            }
            catch (KumoApiException e) when (e.IsUnreachable && !cancellationToken.IsCancellationRequested)
            {
                // Operations live in kumod's database, so they outlive a kumod restart: keep asking for a while.
                unreachableSince ??= DateTime.UtcNow;
                if (DateTime.UtcNow - unreachableSince > ReconnectWindow)
                    throw;
                reporter.Report(new OperationEvent { OperationId = id, Status = OperationStatuses.Running, Message = "kumod is unreachable; retrying", At = DateTimeOffset.Now });
                await Task.Delay(PollInterval, cancellationToken);
                continue;
            }
            reporter.Report(new OperationEvent
            {
                OperationId = operation.Id,
                Status = operation.Status,
                Message = operation.Message,
                At = operation.UpdatedAt,
            });
            if (OperationStatuses.IsFinal(operation.Status))
                return operation;
            await Task.Delay(PollInterval, cancellationToken);
        }
    }

    private static OperationEvent ParseEvent(string id, string data)
    {
        try
        {
            return JsonSerializer.Deserialize<OperationEvent>(data, JsonOptions)
                ?? throw KumoApiException.Failed($"the event stream of operation {id} sent an empty event");
        }
        catch (JsonException e)
        {
            throw KumoApiException.Failed($"the event stream of operation {id} sent an event this client cannot read: {e.Message}", e);
        }
    }

    private static KumoApiException StreamBroke(string id, Exception e) =>
        KumoApiException.Failed($"the event stream of operation {id} broke: {e.Message}", e);

    /// <summary>Passes on only events that change status or message, so stream and polling never repeat a line.</summary>
    private sealed class ChangeReporter(IProgress<OperationEvent>? progress)
    {
        private (string Status, string? Message)? _last;

        public void Report(OperationEvent ev)
        {
            if (_last == (ev.Status, ev.Message))
                return;
            _last = (ev.Status, ev.Message);
            progress?.Report(ev);
        }
    }
}

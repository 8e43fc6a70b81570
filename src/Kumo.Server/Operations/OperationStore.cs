using Dapper;
using Kumo.Core;
using Kumo.Server.Storage;

namespace Kumo.Server.Operations;

/// <summary>Operation rows: created with the change they track, finished by the status that proves it done.</summary>
public sealed class OperationStore(Database db, OperationHub hub, TimeProvider time)
{
    public async Task<Operation?> GetAsync(string id, CancellationToken ct) =>
        (await db.ReadAsync(c => c.QuerySingleOrDefault<OperationRow>("SELECT * FROM operations WHERE id = @id", new { id }), ct))?.ToApi();

    /// <summary>The operation if the caller may see it (its project is theirs, or they are admin); otherwise null.</summary>
    public async Task<Operation?> GetAsync(string id, Identity.Caller caller, IReadOnlySet<string> projects, CancellationToken ct)
    {
        var row = await db.ReadAsync(c => c.QuerySingleOrDefault<OperationRow>("SELECT * FROM operations WHERE id = @id", new { id }), ct);
        if (row is null) return null;
        var visible = caller.IsAdmin || row.UserId == caller.UserId || (row.Project is not null && projects.Contains(row.Project));
        return visible ? row.ToApi() : null;
    }

    /// <summary>
    /// Inserts an operation inside a write. Older unfinished operations on the same instance are failed as
    /// superseded, so a waiter never hangs on an outcome that can no longer happen.
    /// </summary>
    internal Operation Insert(WriteContext ctx, string kind, string target, string? instanceId, string? expect, long minGeneration, string message,
        bool supersede = true, string? project = null, string? userId = null)
    {
        if (instanceId is not null && supersede)
        {
            // Snapshot and volume actions are finished by their own reports, not by the power state: a later power
            // request does not make them impossible.
            foreach (var old in Pending(ctx, instanceId).Where(o => !IsSideAction(o.Expect)))
                Finish(ctx, old, OperationStatuses.Failed, old.Message, $"superseded by a later {kind} request");
        }
        var now = Json.Now(time);
        var row = new OperationRow
        {
            Id = Ulid.NewUlid().ToString().ToLowerInvariant(),
            Kind = kind,
            Target = target,
            InstanceId = instanceId,
            Project = project,
            UserId = userId,
            Expect = expect,
            MinGeneration = minGeneration,
            Status = expect is null ? OperationStatuses.Succeeded : OperationStatuses.Running,
            Message = message,
            CreatedAt = now,
            UpdatedAt = now,
        };
        ctx.Execute(
            """
            INSERT INTO operations (id, kind, target, instance_id, project, user_id, expect, min_generation, status, message, error, created_at, updated_at)
            VALUES ($id, $kind, $target, $instance, $project, $user, $expect, $gen, $status, $message, NULL, $created, $updated)
            """,
            ("$id", row.Id), ("$kind", row.Kind), ("$target", row.Target), ("$instance", row.InstanceId), ("$project", row.Project), ("$user", row.UserId), ("$expect", row.Expect),
            ("$gen", row.MinGeneration), ("$status", row.Status), ("$message", row.Message), ("$created", row.CreatedAt), ("$updated", row.UpdatedAt));
        Publish(ctx, row);
        return row.ToApi();
    }

    /// <summary>
    /// An operation carried out by kumod itself (an image import or build), not observed on an instance: the work
    /// reports progress and its end through <see cref="ProgressAsync"/> and <see cref="FinishAsync"/>.
    /// </summary>
    public Task<Operation> StartJobAsync(string kind, string target, string? project, string? userId, string message, CancellationToken ct) =>
        db.WriteAsync(ctx => Insert(ctx, kind, target, null, "job", 0, message, supersede: false, project, userId), ct);

    public Task ProgressAsync(string id, string message, CancellationToken ct) => db.WriteAsync(ctx =>
    {
        var op = Job(ctx, id);
        if (op is not null && op.Message != message) Progress(ctx, op, message);
    }, ct);

    public Task FinishAsync(string id, bool succeeded, string message, string? error, CancellationToken ct) => db.WriteAsync(ctx =>
    {
        if (Job(ctx, id) is { } op) Finish(ctx, op, succeeded ? OperationStatuses.Succeeded : OperationStatuses.Failed, message, error);
    }, ct);

    private static OperationRow? Job(WriteContext ctx, string id) =>
        ctx.Connection.QuerySingleOrDefault<OperationRow>(
            "SELECT * FROM operations WHERE id = @id AND status IN ('pending', 'running')", new { id }, ctx.Transaction);

    internal List<OperationRow> Pending(WriteContext ctx, string instanceId) =>
        ctx.Connection.Query<OperationRow>(
            "SELECT * FROM operations WHERE instance_id = @instanceId AND status IN ('pending', 'running')",
            new { instanceId }, ctx.Transaction).ToList();

    /// <summary>Applies an observed instance state to every operation waiting on that instance.</summary>
    internal void Observe(WriteContext ctx, string instanceId, string state, long generation, bool gone, string? message)
    {
        foreach (var op in Pending(ctx, instanceId))
        {
            var done = op.Expect switch
            {
                PowerStates.Deleted => gone,
                InstanceStates.Running => state == InstanceStates.Running && generation >= op.MinGeneration,
                InstanceStates.Stopped => state == InstanceStates.Stopped,
                _ => false,
            };
            if (done)
                Finish(ctx, op, OperationStatuses.Succeeded, message ?? state, null);
            else if (state == InstanceStates.Error && !gone)
                Finish(ctx, op, OperationStatuses.Failed, message, message ?? "the instance went into error");
            // A migration's progress comes from both of its nodes and is written by the migration service alone.
            else if (message is not null && message != op.Message && op.Expect?.StartsWith("migrate:", StringComparison.Ordinal) != true)
                Progress(ctx, op, message);
        }
    }

    /// <summary>Expectations of snapshot and volume actions ("snapshot:NAME", "restore", "attach:ID" ...), which carry a colon or are "restore".</summary>
    internal static bool IsSideAction(string? expect) => expect is not null && (expect.Contains(':', StringComparison.Ordinal) || expect == "restore");

    /// <summary>Finishes the open operations on <paramref name="subjectId"/> whose expectation is <paramref name="expect"/>.</summary>
    internal void Complete(WriteContext ctx, string subjectId, string expect, long generation, string? error, string message)
    {
        foreach (var op in Pending(ctx, subjectId).Where(o => o.Expect == expect && o.MinGeneration <= generation))
            Finish(ctx, op, error is null ? OperationStatuses.Succeeded : OperationStatuses.Failed, message, error);
    }

    /// <summary>Updates the message of the open operations on <paramref name="subjectId"/> whose expectation is <paramref name="expect"/>.</summary>
    internal void ProgressOn(WriteContext ctx, string subjectId, string expect, string message)
    {
        foreach (var op in Pending(ctx, subjectId).Where(o => o.Expect == expect && o.Message != message))
            Progress(ctx, op, message);
    }

    /// <summary>Fails every open operation on an instance (it was removed by force, or its node was removed).</summary>
    internal void FailAll(WriteContext ctx, string instanceId, string error)
    {
        foreach (var op in Pending(ctx, instanceId))
            Finish(ctx, op, OperationStatuses.Failed, op.Message, error);
    }

    private void Progress(WriteContext ctx, OperationRow op, string message)
    {
        op.Message = message;
        op.UpdatedAt = Json.Now(time);
        ctx.Connection.Execute("UPDATE operations SET message = @Message, updated_at = @UpdatedAt WHERE id = @Id", op, ctx.Transaction);
        Publish(ctx, op);
    }

    private void Finish(WriteContext ctx, OperationRow op, string status, string? message, string? error)
    {
        op.Status = status;
        op.Message = message;
        op.Error = error;
        op.UpdatedAt = Json.Now(time);
        ctx.Connection.Execute(
            "UPDATE operations SET status = @Status, message = @Message, error = @Error, updated_at = @UpdatedAt WHERE id = @Id",
            op, ctx.Transaction);
        Publish(ctx, op);
    }

    private void Publish(WriteContext ctx, OperationRow op)
    {
        var e = new OperationEvent { OperationId = op.Id, Status = op.Status, Message = op.Error ?? op.Message, At = Json.Time(op.UpdatedAt) };
        ctx.OnCommit(() => hub.Publish(e));
    }
}

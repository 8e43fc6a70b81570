using System.Reflection;

namespace Kumo.Core.Tests;

/// <summary>
/// These strings are stored in the database and matched by clients. Renaming one corrupts stored rows or breaks
/// callers, so every value is pinned here; adding a constant without pinning it fails too.
/// </summary>
public sealed class PersistedValuesTests
{
    public static TheoryData<Type, string[]> Pinned => new()
    {
        { typeof(InstanceStates), ["Creating=creating", "Starting=starting", "Running=running", "Stopping=stopping", "Stopped=stopped", "Error=error", "Lost=lost", "Deleting=deleting"] },
        { typeof(InstanceTypes), ["Vm=vm", "Container=container"] },
        { typeof(PowerStates), ["Running=running", "Stopped=stopped", "Deleted=deleted"] },
        { typeof(StopModes), ["Graceful=graceful", "Force=force"] },
        { typeof(NodeStates), ["Ready=ready", "Draining=draining", "Down=down"] },
        { typeof(OperationStatuses), ["Pending=pending", "Running=running", "Succeeded=succeeded", "Failed=failed"] },
        { typeof(ReadinessModes), ["Marker=marker", "Timeout=timeout", "None=none"] },
        { typeof(SnapshotStates), ["Creating=creating", "Ready=ready", "Deleting=deleting"] },
        { typeof(VolumeStates), ["Available=available", "Attaching=attaching", "Attached=attached", "Detaching=detaching", "Deleting=deleting"] },
        { typeof(ClusterStates), ["Scheduled=scheduled", "Creating=creating", "Ready=ready", "Degraded=degraded", "Scaling=scaling", "RollingBack=rolling-back", "Deleting=deleting", "Ending=ending", "Ended=ended", "Failed=failed"] },
        { typeof(TokenKinds), ["Session=session", "Api=api", "Metrics=metrics"] },
        { typeof(ReservationKinds), ["Cluster=cluster", "Vm=vm"] },
        { typeof(AuditOutcomes), ["Allowed=allowed", "Denied=denied", "Error=error", "StreamStarted=stream-started"] },
        {
            typeof(ProblemTypes),
            [
                "Validation=https://kumo.dev/problems/validation",
                "MalformedBody=https://kumo.dev/problems/malformed-body",
                "UnsupportedMediaType=https://kumo.dev/problems/unsupported-media-type",
                "NotFound=https://kumo.dev/problems/not-found",
                "Conflict=https://kumo.dev/problems/conflict",
                "PreconditionFailed=https://kumo.dev/problems/precondition-failed",
                "PreconditionRequired=https://kumo.dev/problems/precondition-required",
                "NoCapacity=https://kumo.dev/problems/no-capacity",
                "InvalidState=https://kumo.dev/problems/invalid-state",
                "NodeBusy=https://kumo.dev/problems/node-busy",
                "Forbidden=https://kumo.dev/problems/forbidden",
                "Unauthorized=https://kumo.dev/problems/unauthorized",
                "QuotaExceeded=https://kumo.dev/problems/quota-exceeded",
                "TooManyAttempts=https://kumo.dev/problems/too-many-attempts",
                "DirectoryUnavailable=https://kumo.dev/problems/directory-unavailable",
                "Internal=https://kumo.dev/problems/internal",
                "ImageRejected=https://kumo.dev/problems/image-rejected",
                "ImageTooLarge=https://kumo.dev/problems/image-too-large",
                "SubnetOverlap=https://kumo.dev/problems/subnet-overlap",
                "NetworkInUse=https://kumo.dev/problems/network-in-use",
                "AddressesExhausted=https://kumo.dev/problems/addresses-exhausted",
                "PolicyRefused=https://kumo.dev/problems/policy-refused",
                "VolumeInUse=https://kumo.dev/problems/volume-in-use",
                "NodeUnavailable=https://kumo.dev/problems/node-unavailable",
                "WebSocketRequired=https://kumo.dev/problems/websocket-required",
                "DebugPortsExhausted=https://kumo.dev/problems/debug-ports-exhausted",
                "BuildContextRejected=https://kumo.dev/problems/build-context-rejected",
                "BuildContextTooLarge=https://kumo.dev/problems/build-context-too-large",
                "ReservationConflict=https://kumo.dev/problems/reservation-conflict",
                "TemplateInvalid=https://kumo.dev/problems/template-invalid",
                "TemplateOverride=https://kumo.dev/problems/template-override",
            ]
        },
    };

    [Theory]
    [MemberData(nameof(Pinned))]
    public void PersistedStrings_AreUnchanged(Type type, string[] expected)
    {
        var actual = type.GetFields(BindingFlags.Public | BindingFlags.Static)
            .Where(f => f.IsLiteral && f.FieldType == typeof(string))
            .Select(f => $"{f.Name}={f.GetRawConstantValue()}")
            .Order(StringComparer.Ordinal);

        Assert.Equal(expected.Order(StringComparer.Ordinal), actual);
    }

    [Fact]
    public void InstanceStatesAll_ListsEveryState()
    {
        Assert.Equal(["creating", "starting", "running", "stopping", "stopped", "error", "lost", "deleting"], InstanceStates.All);
    }

    [Fact]
    public void NodeStatesAll_ListsEveryState()
    {
        Assert.Equal(["ready", "draining", "down"], NodeStates.All);
    }

    [Theory]
    [InlineData("pending", false)]
    [InlineData("running", false)]
    [InlineData("succeeded", true)]
    [InlineData("failed", true)]
    public void OperationStatusesIsFinal_IsTrueOnlyForSucceededAndFailed(string status, bool final)
    {
        Assert.Equal(final, OperationStatuses.IsFinal(status));
    }
}

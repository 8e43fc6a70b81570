namespace Kumo.Core;

/// <summary>Instance states as stored and sent on the wire. The strings are persisted: never rename one.</summary>
public static class InstanceStates
{
    public const string Creating = "creating";
    public const string Starting = "starting";
    public const string Running = "running";
    public const string Stopping = "stopping";
    public const string Stopped = "stopped";
    public const string Error = "error";
    public const string Lost = "lost";
    public const string Deleting = "deleting";

    public static readonly IReadOnlyList<string> All = [Creating, Starting, Running, Stopping, Stopped, Error, Lost, Deleting];
}

/// <summary>Instance types. Persisted strings.</summary>
public static class InstanceTypes
{
    public const string Vm = "vm";
    public const string Container = "container";
}

/// <summary>What the owner wants an instance to be; the agent converges to it. Persisted strings.</summary>
public static class PowerStates
{
    public const string Running = "running";
    public const string Stopped = "stopped";
    public const string Deleted = "deleted";
}

/// <summary>How a stop is carried out. Persisted strings.</summary>
public static class StopModes
{
    /// <summary>Ask the guest to power off, then force after a timeout.</summary>
    public const string Graceful = "graceful";

    /// <summary>Pull the plug (virsh destroy).</summary>
    public const string Force = "force";
}

public static class NodeStates
{
    public const string Ready = "ready";
    public const string Draining = "draining";
    public const string Down = "down";

    public static readonly IReadOnlyList<string> All = [Ready, Draining, Down];
}

public static class OperationStatuses
{
    public const string Pending = "pending";
    public const string Running = "running";
    public const string Succeeded = "succeeded";
    public const string Failed = "failed";

    public static bool IsFinal(string status) => status is Succeeded or Failed;
}

public static class ReadinessModes
{
    /// <summary>The guest writes KUMO_READY on the kumo.ready virtio-serial port.</summary>
    public const string Marker = "marker";

    /// <summary>Running after a fixed delay, for foreign images that cannot signal.</summary>
    public const string Timeout = "timeout";

    /// <summary>Running as soon as the process is up.</summary>
    public const string None = "none";
}

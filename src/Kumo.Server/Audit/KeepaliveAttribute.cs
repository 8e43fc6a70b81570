namespace Kumo.Server.Audit;

/// <summary>
/// Marks an agent RPC that only keeps a node alive or reports telemetry (Heartbeat every 2 s, ReportMetrics every 5 s
/// per node). Such a call is not an action by anyone: auditing each one would grow the audit table by tens of thousands
/// of entries a day per node and bury the entries that matter. It is left out of the audit log when it succeeds;
/// refused or failed ones are still recorded, and so is every call that registers a node or changes state.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class KeepaliveAttribute : Attribute;

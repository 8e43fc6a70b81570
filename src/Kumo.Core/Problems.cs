namespace Kumo.Core;

/// <summary>Stable RFC 9457 problem type URIs. Clients match on these; never change one.</summary>
public static class ProblemTypes
{
    private const string Base = "https://kumo.dev/problems/";

    public const string Validation = Base + "validation";
    public const string MalformedBody = Base + "malformed-body";
    public const string UnsupportedMediaType = Base + "unsupported-media-type";
    public const string NotFound = Base + "not-found";
    public const string Conflict = Base + "conflict";
    public const string PreconditionFailed = Base + "precondition-failed";
    public const string PreconditionRequired = Base + "precondition-required";
    public const string NoCapacity = Base + "no-capacity";
    public const string InvalidState = Base + "invalid-state";
    public const string NodeBusy = Base + "node-busy";
    public const string Forbidden = Base + "forbidden";
    public const string Unauthorized = Base + "unauthorized";
    public const string QuotaExceeded = Base + "quota-exceeded";
    public const string TooManyAttempts = Base + "too-many-attempts";
    public const string DirectoryUnavailable = Base + "directory-unavailable";
    public const string Internal = Base + "internal";

    /// <summary>An uploaded image that is not a disk Kumo accepts: unknown format, corrupt, truncated or hostile.</summary>
    public const string ImageRejected = Base + "image-rejected";

    /// <summary>The instance's node is not connected to kumod right now (its console cannot be reached).</summary>
    public const string NodeUnavailable = Base + "node-unavailable";

    /// <summary>Every port of the admin's gdb stub pool is in use.</summary>
    public const string DebugPortsExhausted = Base + "debug-ports-exhausted";

    /// <summary>A plain HTTP request to an endpoint that only speaks WebSocket (the console).</summary>
    public const string WebSocketRequired = Base + "websocket-required";

    /// <summary>An upload or an unpacked archive past the configured maximum image size.</summary>
    public const string ImageTooLarge = Base + "image-too-large";

    /// <summary>A network's subnet overlaps another network of the same project.</summary>
    public const string SubnetOverlap = Base + "subnet-overlap";

    /// <summary>A network still has instances attached (delete them first).</summary>
    public const string NetworkInUse = Base + "network-in-use";

    /// <summary>Every address of a network's subnet is taken.</summary>
    public const string AddressesExhausted = Base + "addresses-exhausted";

    /// <summary>A container request Kumo's policy refuses: privileged, host namespaces, devices, capabilities, host mounts.</summary>
    public const string PolicyRefused = Base + "policy-refused";
    /// <summary>A volume that is attached to a VM cannot be deleted (or attached elsewhere) until it is detached.</summary>
    public const string VolumeInUse = Base + "volume-in-use";

    /// <summary>A libvirt domain template an admin adds that Kumo refuses (placeholders, Kumo-owned elements, not XML).</summary>
    public const string TemplateInvalid = Base + "template-invalid";

    /// <summary>A user asked to change what a domain template fixes (network, disk bus or format, ...).</summary>
    public const string TemplateOverride = Base + "template-override";

    /// <summary>A container build's context Kumo will not build: not a tar, an entry escaping the build directory, no build file.</summary>
    public const string BuildContextRejected = Base + "build-context-rejected";

    /// <summary>A container build's context past kumod's limit (--build-context-max).</summary>
    public const string BuildContextTooLarge = Base + "build-context-too-large";

    /// <summary>A reservation window does not fit: capacity is already reserved by the named windows.</summary>
    public const string ReservationConflict = Base + "reservation-conflict";
}

/// <summary>RFC 9457 problem details as Kumo sends them.</summary>
public sealed record Problem
{
    public required string Type { get; init; }
    public required string Title { get; init; }
    public int Status { get; init; }
    public string? Detail { get; init; }
    public string? Instance { get; init; }

    /// <summary>For validation errors: field name to messages.</summary>
    public IReadOnlyDictionary<string, string[]>? Errors { get; init; }

    /// <summary>For scheduling failures: why each node was rejected.</summary>
    public IReadOnlyDictionary<string, string>? Rejections { get; init; }
}

using Kumo.Core;

namespace Kumo.Client;

/// <summary>An instance together with the entity tag to send back as <c>If-Match</c> when changing it.</summary>
public sealed record InstanceWithETag(Instance Instance, string ETag);

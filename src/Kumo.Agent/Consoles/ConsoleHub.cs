using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Kumo.Agent.Consoles;

/// <summary>The consoles of the guests on this node, opened on first need and closed when an instance is deleted.</summary>
public sealed class ConsoleHub(Func<string, ConsolePaths?> pathsOf, ILogger<GuestConsole> logger)
{
    private readonly ConcurrentDictionary<string, GuestConsole> _consoles = new();
    private readonly object _openLock = new();

    /// <summary>The console of an instance that has a directory on this node; null when it has none.</summary>
    public GuestConsole? Get(string id)
    {
        if (_consoles.TryGetValue(id, out var existing)) return existing;
        lock (_openLock)
        {
            if (_consoles.TryGetValue(id, out existing)) return existing;
            if (pathsOf(id) is not { } paths) return null;
            var console = GuestConsole.Open(id, paths, logger);
            _consoles[id] = console;
            return console;
        }
    }

    /// <summary>Closes an instance's console before its directory is removed; its viewers' sessions end.</summary>
    public async Task CloseAsync(string id)
    {
        GuestConsole? console;
        lock (_openLock)
        {
            if (!_consoles.TryRemove(id, out console)) return;
        }
        await console.DisposeAsync();
    }

    public async Task CloseAllAsync()
    {
        foreach (var id in _consoles.Keys.ToList()) await CloseAsync(id);
    }
}

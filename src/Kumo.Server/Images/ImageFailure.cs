using Kumo.Server.Api;
using Kumo.Server.Operations;
using Microsoft.Data.Sqlite;

namespace Kumo.Server.Images;

/// <summary>How an image build or import that stopped part way tells its user, the same way for both.</summary>
internal static class ImageFailure
{
    /// <summary>One line for the operation's error: a name clash rather than SQLite's constraint message.</summary>
    public static string Why(Exception e, string name) => e switch
    {
        SqliteException { SqliteErrorCode: 19 } => $"an image named '{name}' was created meanwhile",
        ProblemException p => p.Detail ?? p.Title,
        OperationCanceledException => "kumod is shutting down",
        _ => e.Message,
    };

    /// <summary>Finishes the operation as failed; if even that cannot be written, <paramref name="log"/> is told why.</summary>
    public static async Task RecordAsync(OperationStore operations, string opId, string message, string why, Action<string> log)
    {
        try
        {
            await operations.FinishAsync(opId, false, message, why, CancellationToken.None);
        }
        catch (Exception again) when (again is not OutOfMemoryException)
        {
            log("recording the failure: " + again.Message);
        }
    }
}

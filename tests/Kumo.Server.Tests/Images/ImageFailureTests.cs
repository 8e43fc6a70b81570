using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Images;
using Microsoft.Data.Sqlite;

namespace Kumo.Server.Tests.Images;

public sealed class ImageFailureTests
{
    [Fact]
    public void AUniqueConstraint_IsANameClash() =>
        Assert.Equal("an image named 'debian' was created meanwhile", ImageFailure.Why(new SqliteException("UNIQUE constraint failed: images.name", 19), "debian"));

    [Fact]
    public void AProblem_GivesItsDetail_OrItsTitle()
    {
        Assert.Equal("the disk is damaged", ImageFailure.Why(new ProblemException(422, ProblemTypes.Validation, "Rejected", "the disk is damaged"), "x"));
        Assert.Equal("Rejected", ImageFailure.Why(new ProblemException(422, ProblemTypes.Validation, "Rejected"), "x"));
    }

    [Fact]
    public void ACancellation_IsAShutdown() =>
        Assert.Equal("kumod is shutting down", ImageFailure.Why(new OperationCanceledException(), "x"));

    [Fact]
    public void AnythingElse_GivesItsMessage() =>
        Assert.Equal("qemu-img: no space left", ImageFailure.Why(new IOException("qemu-img: no space left"), "x"));
}

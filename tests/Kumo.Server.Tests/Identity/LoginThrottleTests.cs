using Kumo.Server.Identity;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Identity;

public sealed class LoginThrottleTests
{
    private readonly ManualTimeProvider _time = new();

    [Fact]
    public void FiveBegunAttempts_WithoutSuccess_RefuseTheSixthUntilTheWindowPasses()
    {
        var throttle = new LoginThrottle(_time);
        for (var i = 0; i < LoginThrottle.MaxFailures; i++)
            Assert.Null(throttle.TryBegin("alice", "10.0.0.1", out _));

        Assert.Equal(LoginThrottle.Window, throttle.TryBegin("alice", "10.0.0.2", out _));

        _time.Advance(LoginThrottle.Window + TimeSpan.FromSeconds(1));
        Assert.Null(throttle.TryBegin("alice", "10.0.0.2", out _));
    }

    [Fact]
    public void Success_TakesTheAttemptBackFromTheSource()
    {
        var throttle = new LoginThrottle(_time);

        for (var i = 0; i < 3 * LoginThrottle.MaxFailures; i++)
        {
            Assert.Null(throttle.TryBegin("bob", "10.0.0.1", out var attempt));
            throttle.Succeeded("bob", "10.0.0.1", attempt);
        }

        Assert.Null(throttle.TryBegin("carol", "10.0.0.1", out _));
    }

    [Fact]
    public void RefusedAttempts_AreNotCounted()
    {
        var throttle = new LoginThrottle(_time);
        for (var i = 0; i < LoginThrottle.MaxFailures; i++)
            Assert.Null(throttle.TryBegin("alice", "10.0.0.1", out _));
        _time.Advance(TimeSpan.FromMinutes(1));
        for (var i = 0; i < 10; i++)
            Assert.NotNull(throttle.TryBegin("alice", "10.0.0.9", out _));

        _time.Advance(LoginThrottle.Window);

        Assert.Null(throttle.TryBegin("carol", "10.0.0.9", out _));
    }
}

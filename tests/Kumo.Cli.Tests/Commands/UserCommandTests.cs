using System.Text.Json;
using Kumo.Core;
using Kumo.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using static Kumo.Cli.Tests.Commands.IdentityFakes;

namespace Kumo.Cli.Tests.Commands;

public sealed class UserCommandTests
{
    private static Task<FakeKumod> StartAsync(Action<UsersPost> onPost) => FakeKumod.StartAsync(app =>
    {
        app.MapPost("/api/v1/users", (UsersPost body) =>
        {
            onPost(body);
            var created = new UserCreated { User = User(body.Name!, body.Role ?? "user"), Password = body.Password is null ? "Gen3rated-0nce" : null };
            return Results.Json(created, FakeKumod.Json, statusCode: 201);
        });
        app.MapDelete("/api/v1/users/{name}", () => Results.NoContent());
    });

    [Fact]
    public async Task Add_WithoutPassword_PrintsTheGeneratedPasswordOnce()
    {
        UsersPost? sent = null;
        await using var kumod = await StartAsync(body => sent = body);

        var result = await CliRunner.RunAsync(kumod.Url, "user", "add", "alice");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(new UsersPost { Name = "alice", Role = "user" }, sent);
        Assert.Equal(
            "user alice created (role user)\npassword (shown only now; it cannot be shown again): Gen3rated-0nce\n",
            result.Out);
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(result.Out + result.Err, "Gen3rated-0nce"));
    }

    [Fact]
    public async Task Add_WithPasswordStdin_SendsIt_AndPrintsNoPassword()
    {
        UsersPost? sent = null;
        await using var kumod = await StartAsync(body => sent = body);

        var result = await CliRunner.RunAsync(["--url", kumod.Url.ToString(), "user", "add", "bob", "--role", "admin", "--password-stdin"],
            stdin: "a long pass phrase\n");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(new UsersPost { Name = "bob", Role = "admin", Password = "a long pass phrase" }, sent);
        Assert.Equal("user bob created (role admin)\n", result.Out);
    }

    [Fact]
    public async Task Add_AsJson_CarriesTheGeneratedPassword()
    {
        await using var kumod = await StartAsync(_ => { });

        var result = await CliRunner.RunAsync(kumod.Url, "user", "add", "alice", "-o", "json");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal("Gen3rated-0nce", JsonSerializer.Deserialize<UserCreated>(result.Out, FakeKumod.Json)!.Password);
    }

    [Theory]
    [InlineData(new[] { "alice" }, "DELETE /api/v1/users/alice")]
    [InlineData(new[] { "alice", "--delete-resources" }, "DELETE /api/v1/users/alice?resources=delete")]
    [InlineData(new[] { "alice", "--reassign-to", "bob" }, "DELETE /api/v1/users/alice?resources=reassign&to=bob")]
    public async Task Delete_SaysWhatHappensToTheUsersInstances(string[] args, string request)
    {
        await using var kumod = await StartAsync(_ => { });

        var result = await CliRunner.RunAsync(kumod.Url, ["user", "delete", .. args]);

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(request, Assert.Single(kumod.Requests));
    }

    [Fact]
    public async Task Delete_WithBothChoices_IsRefusedBeforeAnyRequest()
    {
        await using var kumod = await StartAsync(_ => { });

        var result = await CliRunner.RunAsync(kumod.Url, "user", "delete", "alice", "--delete-resources", "--reassign-to", "bob");

        Assert.Equal(1, result.ExitCode);
        Assert.Equal(["error: --delete-resources and --reassign-to exclude each other"], result.ErrLines);
        Assert.Empty(kumod.Requests);
    }
}

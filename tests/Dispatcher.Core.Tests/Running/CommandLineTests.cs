namespace Dispatcher.Tests.Running;

public sealed class CommandLineTests
{
    [Theory]
    [InlineData("true", new[] { "true" })]
    [InlineData("  echo   a  b ", new[] { "echo", "a", "b" })]
    [InlineData("echo \"hello world\" x", new[] { "echo", "hello world", "x" })]
    [InlineData("echo a\"b c\"d", new[] { "echo", "ab cd" })]
    [InlineData("echo \"\"\"quoted\"\"\"", new[] { "echo", "\"quoted\"" })]
    [InlineData("echo \"a \"\"\" b\"", new[] { "echo", "a \" b" })]
    [InlineData("echo \"\" x", new[] { "echo", "x" })]
    [InlineData("a | b > c", new[] { "a", "|", "b", ">", "c" })]
    [InlineData("echo 'single quotes' \\\"", new[] { "echo", "'single", "quotes'", "\\" })]
    [InlineData("tab\tsep\nnewline", new[] { "tab", "sep", "newline" })]
    public void Split_FollowsQProcessRules(string command, string[] expected) =>
        Assert.Equal(expected, CommandLine.Split(command));

    [Fact]
    public void Split_SpecExampleCommand()
    {
        var args = CommandLine.Split("pkg install -y --repository \"pcbsd-major\"misc/pcbsd-meta-mate");
        Assert.Equal(["pkg", "install", "-y", "--repository", "pcbsd-majormisc/pcbsd-meta-mate"], args);
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("\"\"")]
    public void Split_NothingToRun_IsEmpty(string command) => Assert.Empty(CommandLine.Split(command));

    [Fact]
    public void Split_UnclosedQuote_RunsToTheEnd() =>
        Assert.Equal(["sh", "-c", "echo hi there"], CommandLine.Split("sh -c \"echo hi there"));
}

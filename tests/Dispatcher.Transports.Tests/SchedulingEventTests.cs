using System.Text.Json.Nodes;

namespace Dispatcher.Transports.Tests;

/// <summary>Finished events carry attempts, labels and the skipped outcome; a retry shows as pending again.</summary>
public sealed class SchedulingEventTests
{
    [Fact]
    public async Task FinishedEvents_CarryAttempt_Labels_AndSkipped()
    {
        await using var server = await TestServer.StartAsync();
        await using var client = await server.ConnectAsync("admin");
        await client.RequestAsync("events", "subscribe", "dispatcher");
        var counter = Path.Combine(Directory.CreateTempSubdirectory("sched-events-").FullName, "n");

        await client.SendTextAsync(new JsonObject
        {
            ["namespace"] = "rpc",
            ["name"] = "dispatcher",
            ["id"] = "run",
            ["args"] = JsonNode.Parse($$$"""
                {"action":"run",
                 "flaky":{"commands":"sh -c \"echo x >> {{{counter}}}; [ $(wc -l < {{{counter}}}) -ge 2 ]\"","retry":{"count":1,"delay":0},"labels":{"team":"ops"}},
                 "doomed":{"commands":"sh -c \"exit 4\""},
                 "dependent":{"commands":"true","after":"doomed"}}
                """),
        }.ToJsonString());

        var frames = new List<JsonNode>();
        JsonNode? flaky = null, dependent = null;
        while (flaky is null || dependent is null)
        {
            var frame = await client.ReceiveAsync(f => f["args"]?["process_id"] is not null);
            frames.Add(frame);
            if ((string?)frame["args"]!["state"] == "finished")
            {
                switch ((string?)frame["args"]!["process_id"])
                {
                    case "flaky":
                        flaky = frame;
                        break;
                    case "dependent":
                        dependent = frame;
                        break;
                }
            }
        }

        var details = flaky["args"]!["process_details"]!;
        Assert.Equal("succeeded", (string?)details["outcome"]);
        Assert.Equal(2, (int)details["attempt"]!);
        Assert.Equal("failed", (string?)details["previous_attempts"]![0]!["outcome"]);
        Assert.Equal("ops", (string?)details["labels"]!["team"]);
        Assert.Equal("skipped", (string?)dependent["args"]!["process_details"]!["outcome"]);
        Assert.Null(dependent["args"]!["process_details"]!["time_started"]);

        // The retry shows as pending again between its two runs.
        Assert.Equal(2, frames.Count(f => (string?)f["args"]!["process_id"] == "flaky" && (string?)f["args"]!["state"] == "pending"));
    }
}

// A client that is not ours: Node's built-in fetch and a small SSE reader, no packages.
// Usage: node api_client.mjs BASE_URL TOKEN DESCRIPTION
// Submits a job, follows its event stream to the terminal event, reads the result, and prints
// {"job_id", "events": [kinds...], "status": {...}} as JSON on stdout.
const [base, token, description] = process.argv.slice(2);
const auth = { Authorization: `Bearer ${token}` };

const submitted = await fetch(`${base}/v1/jobs`, {
  method: "POST",
  headers: { ...auth, "Content-Type": "application/json" },
  body: JSON.stringify({ description }),
});
if (submitted.status !== 202) {
  console.error(`submit answered ${submitted.status}: ${await submitted.text()}`);
  process.exit(1);
}
const job = await submitted.json();
if (submitted.headers.get("location") !== `/v1/jobs/${job.job_id}`) {
  console.error(`unexpected Location: ${submitted.headers.get("location")}`);
  process.exit(1);
}

const stream = await fetch(`${base}/v1/jobs/${job.job_id}/events`, {
  headers: { ...auth, Accept: "text/event-stream" },
});
const kinds = [];
const decoder = new TextDecoder();
let buffered = "";
for await (const chunk of stream.body) {
  buffered += decoder.decode(chunk, { stream: true });
  let end;
  while ((end = buffered.indexOf("\n\n")) >= 0) {
    const block = buffered.slice(0, end);
    buffered = buffered.slice(end + 2);
    const kind = block.split("\n").find((line) => line.startsWith("event: "));
    if (kind) kinds.push(kind.slice("event: ".length));
  }
}

const status = await (await fetch(`${base}/v1/jobs/${job.job_id}`, { headers: auth })).json();
console.log(JSON.stringify({ job_id: job.job_id, events: kinds, status }));

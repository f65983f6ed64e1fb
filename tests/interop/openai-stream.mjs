// Streams a chat completion and a completion from an OpenAI-compatible server with the official `openai` package,
// then prints both texts as one JSON line: {"chat":"…","completion":"…"}. ServeTests-style C# tests compare them
// with the reference continuation, so the texts travel as JSON to keep every space and newline.
import OpenAI from "openai";

const [baseURL, prompt, maxTokens, model = "inferencemesh"] = process.argv.slice(2);
const max = Number.parseInt(maxTokens ?? "", 10);
if (!baseURL || prompt === undefined || !Number.isInteger(max) || max < 1) {
  console.error("usage: node openai-stream.mjs <base URL ending in /v1> <prompt> <max tokens> [model]");
  process.exit(2);
}

const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 60_000 });

let chat = "";
const chatStream = await client.chat.completions.create({
  model, messages: [{ role: "user", content: prompt }], max_tokens: max, temperature: 0, stream: true,
});
for await (const chunk of chatStream) chat += chunk.choices[0]?.delta?.content ?? "";

let completion = "";
const completionStream = await client.completions.create({ model, prompt, max_tokens: max, temperature: 0, stream: true });
for await (const chunk of completionStream) completion += chunk.choices[0]?.text ?? "";

console.log(JSON.stringify({ chat, completion }));

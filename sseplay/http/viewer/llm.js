// An LLM answer assembled from its stream, whatever the route: OpenAI Chat chunks, OpenAI
// Responses events, Anthropic Messages events or Gemini responses, recognised from the
// data. ``take`` returns true for an event of a known provider.
class Answer {
  constructor() {
    this.provider = null;
    this.text = "";
    this.tools = new Map();  // the provider's key -> { name, id, args }
    this.finish = null;
    this.usage = null;  // { input, output, total }
    this.error = null;
    this.done = false;  // the provider's own last event came
    this.chunks = 0;  // events that added text or arguments
    this.firstAt = null;
    this.lastAt = null;
  }

  take(event, at) {
    if (event.data === "[DONE]") {
      if (this.provider !== "OpenAI Chat") return false;
      this.done = true;
      return true;
    }
    let value;
    try { value = JSON.parse(event.data); } catch (_) { return false; }
    if (value === null || typeof value !== "object" || Array.isArray(value)) return false;
    const before = this.text.length + this.argumentsLength();
    const known = this.chat(value) || this.responses(value) || this.anthropic(value) || this.gemini(value);
    if (!known) return false;
    if (this.text.length + this.argumentsLength() > before) {
      this.chunks += 1;
      if (this.firstAt === null) this.firstAt = at;
      this.lastAt = at;
    }
    return true;
  }

  argumentsLength() {
    let length = 0;
    for (const tool of this.tools.values()) length += tool.args.length + tool.name.length;
    return length;
  }

  tool(key, name, id) {
    if (!this.tools.has(key)) this.tools.set(key, { name: name || "", id: id || "", args: "" });
    const tool = this.tools.get(key);
    if (name) tool.name = name;
    if (id) tool.id = id;
    return tool;
  }

  errorOf(value) {
    const error = value.error;
    if (error === undefined || error === null) return;
    this.error = typeof error === "object" ? (error.message || JSON.stringify(error)) : String(error);
  }

  chat(value) {
    const chunk = value.object === "chat.completion.chunk";
    if (!chunk && !(Array.isArray(value.choices) && value.choices.some((c) => c && c.delta))) return false;
    this.provider = "OpenAI Chat";
    for (const choice of value.choices || []) {
      if ((choice.index || 0) !== 0) continue;
      const delta = choice.delta || {};
      if (typeof delta.content === "string") this.text += delta.content;
      if (typeof delta.refusal === "string") this.text += delta.refusal;
      for (const call of delta.tool_calls || []) {
        const fn = call.function || {};
        const tool = this.tool("call " + call.index, fn.name, call.id);
        if (typeof fn.arguments === "string") tool.args += fn.arguments;
      }
      if (choice.finish_reason) this.finish = choice.finish_reason;
    }
    if (value.usage) {
      const u = value.usage;
      this.usage = { input: u.prompt_tokens, output: u.completion_tokens, total: u.total_tokens };
    }
    this.errorOf(value);
    return true;
  }

  responses(value) {
    const type = value.type;
    if (typeof type !== "string" || !type.startsWith("response.")) return false;
    this.provider = "OpenAI Responses";
    if (type === "response.output_text.delta" || type === "response.refusal.delta") {
      this.text += value.delta;
    } else if (type === "response.output_item.added" && value.item && value.item.type === "function_call") {
      this.tool(value.item.id, value.item.name, value.item.call_id).args += value.item.arguments || "";
    } else if (type === "response.function_call_arguments.delta") {
      this.tool(value.item_id).args += value.delta;
    } else if (type === "response.function_call_arguments.done") {
      this.tool(value.item_id).args = value.arguments;
    } else if (type === "response.completed" || type === "response.incomplete" || type === "response.failed") {
      const response = value.response || {};
      this.done = true;
      const reason = response.incomplete_details && response.incomplete_details.reason;
      this.finish = (response.status || type.slice(9)) + (reason ? " (" + reason + ")" : "");
      const u = response.usage;
      if (u) this.usage = { input: u.input_tokens, output: u.output_tokens, total: u.total_tokens };
      this.errorOf(response);
    }
    return true;
  }

  anthropic(value) {
    const types = ["message_start", "content_block_start", "content_block_delta", "content_block_stop",
                   "message_delta", "message_stop", "ping", "error"];
    if (!types.includes(value.type)) return false;
    if (value.type === "ping" && this.provider !== "Anthropic") return false;
    if (value.type === "error") {
      this.errorOf(value);
      if (this.provider === null) this.provider = "Anthropic";
      return true;
    }
    this.provider = "Anthropic";
    if (value.type === "message_start") {
      const u = (value.message && value.message.usage) || {};
      this.usage = { input: u.input_tokens, output: u.output_tokens, total: undefined };
    } else if (value.type === "content_block_start") {
      const block = value.content_block || {};
      if (block.type === "tool_use") this.tool("block " + value.index, block.name, block.id);
    } else if (value.type === "content_block_delta") {
      const delta = value.delta || {};
      if (delta.type === "text_delta") this.text += delta.text;
      else if (delta.type === "input_json_delta") this.tool("block " + value.index).args += delta.partial_json;
    } else if (value.type === "message_delta") {
      if (value.delta && value.delta.stop_reason) this.finish = value.delta.stop_reason;
      if (value.usage) this.usage = { ...(this.usage || {}), output: value.usage.output_tokens };
    } else if (value.type === "message_stop") {
      this.done = true;
    }
    return true;
  }

  gemini(value) {
    if (!Array.isArray(value.candidates) && !value.usageMetadata) {
      if (this.provider === "Gemini" && value.error) { this.errorOf(value); return true; }
      return false;
    }
    this.provider = "Gemini";
    const candidate = (value.candidates || [])[0] || {};
    const parts = (candidate.content && candidate.content.parts) || [];
    for (const part of parts) {
      if (typeof part.text === "string" && !part.thought) this.text += part.text;
      if (part.functionCall) {
        const tool = this.tool("part " + this.tools.size, part.functionCall.name);
        tool.args = JSON.stringify(part.functionCall.args || {});
      }
    }
    if (candidate.finishReason) {
      this.finish = candidate.finishReason;
      this.done = true;
    }
    const u = value.usageMetadata;
    if (u) this.usage = { input: u.promptTokenCount, output: u.candidatesTokenCount, total: u.totalTokenCount };
    return true;
  }

  // Time to first token (from ``start``, ms) and tokens per second, as shown.
  speed(start) {
    if (this.firstAt === null) return "";
    const parts = ["first token after " + Math.round(this.firstAt - start) + " ms"];
    const tokens = this.usage && Number.isFinite(this.usage.output) ? this.usage.output : this.chunks;
    const seconds = (this.lastAt - this.firstAt) / 1000;
    // tokens - 1 gaps between the first token and the last
    if (seconds > 0 && tokens > 1) parts.push(((tokens - 1) / seconds).toFixed(1) + " tokens/s");
    return parts.join(" \u00b7 ");
  }
}

// mal live page: the audio thread. Microphone frames go to the page (10 ms int16 chunks);
// enhanced int16 chunks from the page are played from a queue; "bypass" plays the microphone.
class MalIO extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.chunk = options.processorOptions.chunk;  // samples per message (10 ms)
    this.pending = new Int16Array(this.chunk);
    this.filled = 0;
    this.queue = [];  // Float32Arrays of enhanced audio
    this.offset = 0;
    this.queued = 0;
    this.bypass = false;
    this.blocks = 0;
    this.levelIn = 0;
    this.levelOut = 0;
    this.port.onmessage = (e) => {
      const m = e.data;
      if (m.type === "audio") {
        const pcm = new Int16Array(m.data);
        const f = new Float32Array(pcm.length);
        for (let i = 0; i < pcm.length; i++) f[i] = pcm[i] / 32768;
        this.queue.push(f);
        this.queued += f.length;
      } else if (m.type === "bypass") {
        this.bypass = m.value;
      }
    };
  }

  process(inputs, outputs) {
    const input = inputs[0] && inputs[0][0];
    const output = outputs[0][0];
    let sumIn = 0, sumOut = 0;
    if (input) {
      for (let i = 0; i < input.length; i++) {
        const v = Math.max(-1, Math.min(1, input[i]));
        sumIn += v * v;
        this.pending[this.filled++] = Math.round(v * 32767);
        if (this.filled === this.chunk) {
          this.port.postMessage({type: "pcm", data: this.pending.buffer}, [this.pending.buffer]);
          this.pending = new Int16Array(this.chunk);
          this.filled = 0;
        }
      }
    }
    for (let i = 0; i < output.length; i++) {
      let v = 0;
      if (this.queue.length) {
        const head = this.queue[0];
        v = head[this.offset++];
        this.queued--;
        if (this.offset === head.length) { this.queue.shift(); this.offset = 0; }
      }
      output[i] = this.bypass && input ? input[i] : v;
      sumOut += output[i] * output[i];
    }
    const n = output.length;
    this.levelIn = Math.max(this.levelIn * 0.9, Math.sqrt(sumIn / n));
    this.levelOut = Math.max(this.levelOut * 0.9, Math.sqrt(sumOut / n));
    if (++this.blocks % 10 === 0) {
      this.port.postMessage({type: "levels", input: this.levelIn, output: this.levelOut, queued: this.queued});
    }
    return true;
  }
}
registerProcessor("mal-io", MalIO);

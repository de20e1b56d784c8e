// The audio thread's part of the page's live mode: the microphone's samples, at the audio context's rate,
// become the 16-bit mono PCM a live session takes, posted every 100 ms with the loudest sample heard (for
// the level meter). The page asks for 16 kHz; it resamples here rather than asking the context for that
// rate, because Firefox refuses to connect a microphone to a context at another rate than the device's.
// "flush" posts what is left and ends the processor.
"use strict";

class CesarPcm extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const rate = options.processorOptions.rate;
    this.step = sampleRate / rate; // input samples per output sample
    this.pcm = new Int16Array(rate / 10);
    this.filled = 0;
    // each output sample is the mean of the input samples in its span: a crude low-pass against aliasing,
    // enough for speech
    this.sum = 0;
    this.count = 0;
    this.position = 0;
    this.peak = 0;
    this.ended = false;
    this.port.onmessage = () => {
      this.post();
      this.port.postMessage({ flushed: true });
      this.ended = true;
    };
  }

  process(inputs) {
    if (this.ended) return false;
    const channels = inputs[0];
    const frames = channels.length ? channels[0].length : 0;
    for (let frame = 0; frame < frames; frame++) {
      let value = 0;
      for (const channel of channels) value += channel[frame];
      this.sum += value / channels.length;
      this.count += 1;
      this.position += 1;
      if (this.position >= this.step) {
        this.position -= this.step;
        this.add(this.sum / this.count);
        this.sum = 0;
        this.count = 0;
      }
    }
    return true;
  }

  add(sample) {
    const clipped = Math.max(-1, Math.min(1, sample));
    this.peak = Math.max(this.peak, Math.abs(clipped));
    this.pcm[this.filled++] = clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff;
    if (this.filled === this.pcm.length) this.post();
  }

  post() {
    if (!this.filled) return;
    const pcm = this.pcm.slice(0, this.filled);
    this.port.postMessage({ pcm, peak: this.peak }, [pcm.buffer]);
    this.filled = 0;
    this.peak = 0;
  }
}

registerProcessor("cesar-pcm", CesarPcm);

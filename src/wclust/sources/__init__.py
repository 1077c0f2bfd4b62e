"""Model sources: zoo:, hf:, timm:, arch: and .wclust -> nn.Module; the offline zoo (MiniLM, DINOv2)."""

"""AdaCoF, its U-Net, and CDFI."""

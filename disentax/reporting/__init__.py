"""Reports over evaluated runs: tables, their rendering, figures, and the
report that assembles them.

  statistics  intervals and tests over seeds: Wilson, bootstrap medians,
              Fisher, Mann-Whitney, Holm, seeds needed
  tables      rows -> numbers: one seed per row chosen, rows grouped by
              (method, dataset, hyperparameters), failure rates with their
              intervals, the DEFT Table 4 pivot, groups compared pairwise,
              metric summaries, NMI matrices, IFPs, metric correlations
  render      those numbers as Markdown, CSV and LaTeX
  figures     plots of loaded runs (`disentax.results.RunResults`)
  pictures    image grids: dataset samples, reconstructions, latent
              traversals (PNG and GIF)
  visualize   the pictures of chosen trained members of a workdir (the CLI
              is `python -m disentax.visualize`; it restores the checkpoint)
  report      `run_report`: every table and figure of some workdirs into a
              directory (the CLI is `python -m disentax.report`)

Results are read by `disentax.results` only.  Nothing here imports
matplotlib until a figure is drawn, and drawing never sets the session's
plotting backend (figures are not pyplot's).
"""

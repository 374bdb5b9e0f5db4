from sitemap_keeper.incremental.cli import main

main()

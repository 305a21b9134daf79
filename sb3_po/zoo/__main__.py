from sb3_po.zoo import main

main()

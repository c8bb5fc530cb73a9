"""Entry point: python app.py [--weights-dir DIR] [--device cpu|cuda] [--port 7860]."""
from demo.app import main

if __name__ == "__main__":
    main()

import { h, mount } from '../dom.js';
import type { Page } from '../main.js';

export const imagesPage: Page = {
  title: 'Images',
  async load(root) {
    mount(
      root,
      h('div', { class: 'page-head' }, h('h1', {}, 'Images')),
      h(
        'div',
        { class: 'panel placeholder', 'data-testid': 'images-placeholder' },
        h('h2', {}, 'Boot images arrive with the images issue'),
        h('p', {}, 'Image management (upload, replication between nodes, which node holds what) is not built yet. Until then, boot files and profile kernels live in each node’s artifacts directory; the Cluster page lists which nodes hold which of them through placement.'),
      ),
    );
  },
};
